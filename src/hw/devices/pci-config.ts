// PCI configuration space of one function (4 KB, PCIe extended), with the capabilities an
// ATS/PRI/PASID endpoint has, at the offsets and with the register layouts of the PCIe base
// specification (as Linux's include/uapi/linux/pci_regs.h and drivers/pci/ats.c use them):
//
//   0x000  type-0 header (Vendor/Device ID, Command, Status.CapList, Class, Header Type 0)
//   0x040  PCI Express capability (ID 0x10), version 2, endpoint: terminates the legacy list
//   0x100  ATS extended capability (ID 0x000F):  +4 ATS Capability (Invalidate Queue Depth
//          [4:0], Page Aligned Request bit 5), +6 ATS Control (STU [4:0], Enable bit 15)
//   0x110  PRI extended capability (ID 0x0013):  +4 Control (Enable bit 0, Reset bit 1),
//          +6 Status (Response Failure bit 0 RW1C, Unexpected PRG Index bit 1 RW1C, Stopped
//          bit 8, PRG Response PASID Required bit 15), +8 Outstanding Page Request Capacity,
//          +0xC Outstanding Page Request Allocation
//   0x120  PASID extended capability (ID 0x001B): +4 Capability (Exec bit 1, Priv bit 2,
//          Max PASID Width [12:8]), +6 Control (Enable bit 0, Exec bit 1, Priv bit 2)
//
// Software reaches it with 32-bit accesses (the ECAM window, pcie-ecam.ts); 16-bit registers
// are updated through read-modify-write of their 32-bit word, so each register has a write
// mask and RW1C bits, and the function gets a callback on every write.

export const PCI_VENDOR_ID = 0x00;
export const PCI_COMMAND = 0x04;
export const PCI_COMMAND_MEMORY = 0x2;
export const PCI_COMMAND_MASTER = 0x4;
export const PCI_STATUS_CAP_LIST = 0x10;
export const PCI_CAPABILITY_LIST = 0x34;
export const PCI_CAP_ID_EXP = 0x10;

export const PCI_EXT_CAP_ID_ATS = 0x0f;
export const PCI_EXT_CAP_ID_PRI = 0x13;
export const PCI_EXT_CAP_ID_PASID = 0x1b;

export const PCIE_CAP_OFFSET = 0x40;
export const ATS_CAP_OFFSET = 0x100;
export const PRI_CAP_OFFSET = 0x110;
export const PASID_CAP_OFFSET = 0x120;

export const PCI_ATS_CAP = 0x04;
export const PCI_ATS_CAP_PAGE_ALIGNED = 0x0020;
export const PCI_ATS_CTRL = 0x06;
export const PCI_ATS_CTRL_ENABLE = 0x8000;
export const PCI_PRI_CTRL = 0x04;
export const PCI_PRI_CTRL_ENABLE = 0x0001;
export const PCI_PRI_CTRL_RESET = 0x0002;
export const PCI_PRI_STATUS = 0x06;
export const PCI_PRI_STATUS_RF = 0x0001;
export const PCI_PRI_STATUS_UPRGI = 0x0002;
export const PCI_PRI_STATUS_STOPPED = 0x0100;
export const PCI_PRI_STATUS_PASID = 0x8000;
export const PCI_PRI_MAX_REQ = 0x08;
export const PCI_PRI_ALLOC_REQ = 0x0c;
export const PCI_PASID_CAP = 0x04;
export const PCI_PASID_CAP_EXEC = 0x0002;
export const PCI_PASID_CAP_PRIV = 0x0004;
export const PCI_PASID_CTRL = 0x06;
export const PCI_PASID_CTRL_ENABLE = 0x0001;
export const PCI_PASID_CTRL_EXEC = 0x0002;
export const PCI_PASID_CTRL_PRIV = 0x0004;

export const PCI_CFG_SIZE = 4096;

/** A function's configuration space: bytes, per-byte write masks and RW1C masks. */
export class PciConfigSpace {
  readonly bytes = new Uint8Array(PCI_CFG_SIZE);
  private readonly wmask = new Uint8Array(PCI_CFG_SIZE);
  private readonly w1c = new Uint8Array(PCI_CFG_SIZE);
  private lastExt = -1;
  /** Called after software wrote the 32-bit word at `offset` (aligned). */
  onWrite: ((offset: number) => void) | null = null;

  constructor(vendor: number, device: number, classCode = 0x120000) {
    this.set16(0x00, vendor);
    this.set16(0x02, device);
    this.set32(0x08, (classCode << 8) >>> 0); // class code, revision 0
    this.set16(0x06, PCI_STATUS_CAP_LIST);
    this.bytes[0x0e] = 0; // header type 0
    this.mask16(PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    // PCI Express capability: the legacy list's only entry (next = 0), version 2, endpoint.
    this.bytes[PCI_CAPABILITY_LIST] = PCIE_CAP_OFFSET;
    this.set16(PCIE_CAP_OFFSET, PCI_CAP_ID_EXP);
    this.set16(PCIE_CAP_OFFSET + 2, 0x0002);
  }

  /** Append an extended capability header at `offset` (linking it from the previous one). */
  addExtCap(offset: number, id: number, version = 1): void {
    this.set32(offset, (id | (version << 16)) >>> 0);
    if (this.lastExt >= 0) {
      const prev = this.get32(this.lastExt);
      this.set32(this.lastExt, ((prev & 0xfffff) | (offset << 20)) >>> 0);
    }
    this.lastExt = offset;
  }

  get8(o: number): number {
    return this.bytes[o]!;
  }

  get16(o: number): number {
    return this.bytes[o]! | (this.bytes[o + 1]! << 8);
  }

  get32(o: number): number {
    return (this.get16(o) | (this.get16(o + 2) << 16)) >>> 0;
  }

  /** Device-side writes (no masks). */
  set16(o: number, v: number): void {
    this.bytes[o] = v & 0xff;
    this.bytes[o + 1] = (v >>> 8) & 0xff;
  }

  set32(o: number, v: number): void {
    this.set16(o, v & 0xffff);
    this.set16(o + 2, v >>> 16);
  }

  /** Make `bits` of the 16-bit register at `o` software-writable. */
  mask16(o: number, bits: number): void {
    this.wmask[o] = this.wmask[o]! | (bits & 0xff);
    this.wmask[o + 1] = this.wmask[o + 1]! | ((bits >>> 8) & 0xff);
  }

  mask32(o: number, bits: number): void {
    this.mask16(o, bits & 0xffff);
    this.mask16(o + 2, bits >>> 16);
  }

  /** Make `bits` of the 16-bit register at `o` write-1-to-clear. */
  w1c16(o: number, bits: number): void {
    this.w1c[o] = this.w1c[o]! | (bits & 0xff);
    this.w1c[o + 1] = this.w1c[o + 1]! | ((bits >>> 8) & 0xff);
  }

  /** Software (configuration request) read of the aligned 32-bit word at `offset`. */
  read32(offset: number): number {
    return this.get32(offset & 0xffc);
  }

  /** Software write of the aligned 32-bit word at `offset`. */
  write32(offset: number, v: number): void {
    const o = offset & 0xffc;
    for (let i = 0; i < 4; i++) {
      const b = (v >>> (8 * i)) & 0xff;
      const m = this.wmask[o + i]!;
      const c = this.w1c[o + i]!;
      let cur = this.bytes[o + i]!;
      cur = (cur & ~m) | (b & m);
      cur &= ~(b & c);
      this.bytes[o + i] = cur & 0xff;
    }
    this.onWrite?.(o);
  }
}
