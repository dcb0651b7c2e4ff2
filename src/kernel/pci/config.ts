/**
 * PCI configuration space through ECAM (the only way the kernel reaches it: MMIO loads and
 * stores at ecam + (bus << 20 | dev << 15 | fn << 12) + offset), and the extended
 * capabilities the IOMMU code uses: ATS, PRI and PASID (drivers/pci/ats.c).
 */

import type { PhysicalMemory } from '../../platform/memory.ts';

export const PCI_EXT_CAP_ID_ATS = 0x0f;
export const PCI_EXT_CAP_ID_PRI = 0x13;
export const PCI_EXT_CAP_ID_PASID = 0x1b;

export class PciConfig {
  constructor(
    readonly mem: PhysicalMemory,
    readonly ecamBase: number,
    /** Requester ID: bus[15:8] dev[7:3] fn[2:0]. */
    readonly rid: number,
  ) {}

  private addr(off: number): number {
    return this.ecamBase + this.rid * 4096 + off;
  }

  /** 32-bit config read; all-ones when nothing answers (as on a real bus). */
  read32(off: number): number {
    const v = this.mem.read32(this.addr(off & ~3));
    return v < 0 ? 0xffffffff : v;
  }

  read16(off: number): number {
    return (this.read32(off) >>> ((off & 2) * 8)) & 0xffff;
  }

  write32(off: number, v: number): void {
    this.mem.write32(this.addr(off & ~3), v >>> 0);
  }

  /** 16-bit write as a read-modify-write of the enclosing dword (ECAM windows take 32-bit accesses). */
  write16(off: number, v: number): void {
    const sh = (off & 2) * 8;
    const cur = this.read32(off);
    this.write32(off, ((cur & ~(0xffff << sh)) | ((v & 0xffff) << sh)) >>> 0);
  }

  /** Is there a function here at all (vendor ID not all-ones)? */
  present(): boolean {
    return (this.read32(0) & 0xffff) !== 0xffff;
  }

  /** pci_find_ext_capability: offset of extended capability `id`, or 0. */
  findExtCapability(id: number): number {
    if (!this.present()) return 0;
    let pos = 0x100;
    for (let ttl = 480; ttl > 0 && pos >= 0x100; ttl--) {
      const hdr = this.read32(pos);
      if (hdr === 0 || hdr === 0xffffffff) return 0;
      if ((hdr & 0xffff) === id) return pos;
      pos = (hdr >>> 20) & 0xffc;
    }
    return 0;
  }
}

// ATS capability: +4 cap (16), +6 control (16): E (bit 15), STU (4:0)
export function pciAtsSupported(cfg: PciConfig): boolean {
  return cfg.findExtCapability(PCI_EXT_CAP_ID_ATS) !== 0;
}

/** pci_enable_ats(pdev, ps): Smallest Translation Unit = log2(page size) - 12. 0 or -EINVAL. */
export function pciEnableAts(cfg: PciConfig, pageShift: number): number {
  const pos = cfg.findExtCapability(PCI_EXT_CAP_ID_ATS);
  if (!pos) return -22;
  cfg.write16(pos + 6, 0x8000 | ((pageShift - 12) & 0x1f));
  return 0;
}

export function pciDisableAts(cfg: PciConfig): void {
  const pos = cfg.findExtCapability(PCI_EXT_CAP_ID_ATS);
  if (pos) cfg.write16(pos + 6, cfg.read16(pos + 6) & ~0x8000);
}

// PRI capability: +4 control (E bit 0, R bit 1), +6 status (RF 0, UPRGI 1, STOPPED 8, PASID required 15),
// +8 outstanding request capacity, +12 outstanding request allocation
export function pciPriSupported(cfg: PciConfig): boolean {
  return cfg.findExtCapability(PCI_EXT_CAP_ID_PRI) !== 0;
}

/** pci_prg_resp_pasid_required(). */
export function pciPrgRespPasidRequired(cfg: PciConfig): boolean {
  const pos = cfg.findExtCapability(PCI_EXT_CAP_ID_PRI);
  return pos !== 0 && (cfg.read16(pos + 6) & 0x8000) !== 0;
}

/** pci_enable_pri(pdev, reqs): reset, allocate min(reqs, capacity) outstanding requests, enable. */
export function pciEnablePri(cfg: PciConfig, reqs: number): number {
  const pos = cfg.findExtCapability(PCI_EXT_CAP_ID_PRI);
  if (!pos) return -22;
  const cap = cfg.read32(pos + 8);
  cfg.write16(pos + 4, 0x2); // reset
  cfg.write32(pos + 12, Math.min(reqs, cap));
  cfg.write16(pos + 4, 0x1);
  return 0;
}

export function pciDisablePri(cfg: PciConfig): void {
  const pos = cfg.findExtCapability(PCI_EXT_CAP_ID_PRI);
  if (pos) cfg.write16(pos + 4, 0);
}

// PASID capability: +4 cap (exec bit 1, priv bit 2, max width 12:8), +6 control (E bit 0, exec 1, priv 2)
/** Width of the PASID capability in bits (0 when absent). */
export function pciMaxPasidBits(cfg: PciConfig): number {
  const pos = cfg.findExtCapability(PCI_EXT_CAP_ID_PASID);
  return pos ? (cfg.read16(pos + 4) >>> 8) & 0x1f : 0;
}

export function pciEnablePasid(cfg: PciConfig): number {
  const pos = cfg.findExtCapability(PCI_EXT_CAP_ID_PASID);
  if (!pos) return -22;
  const cap = cfg.read16(pos + 4);
  cfg.write16(pos + 6, 1 | (cap & 0x6));
  return 0;
}

export function pciDisablePasid(cfg: PciConfig): void {
  const pos = cfg.findExtCapability(PCI_EXT_CAP_ID_PASID);
  if (pos) cfg.write16(pos + 6, 0);
}
