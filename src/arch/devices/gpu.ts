/**
 * Register interface and command encoding of the iommu-lab GPU (`iommu-lab,gpu`): a command
 * ring in memory that the driver fills and publishes with RING_TAIL, a fault-status block a
 * driver's fault handler reads, and MSI interrupts. Shared by the hardware model and any
 * software that drives it. Every address the GPU uses (ring, buffers, fences, MSI doorbell)
 * is a bus address: an IOVA behind its IOMMU.
 */

export const GPU_ID_VALUE = 0x47505531; // "GPU1"
export const GPU_WINDOW = 0x1000;

export const GpuReg = {
  ID: 0x00,
  /** FEATURES: WARPS (7:0) parallel execution units, STALL (bit 8) the GPU can wait on stalls. */
  FEATURES: 0x04,
  /** Ring base (bus address), 64-bit, 32-byte aligned. Writable while CTRL.ENABLE is 0. */
  RING_BASE: 0x08,
  /** log2 of the number of 32-byte command slots (1..16). Writable while CTRL.ENABLE is 0. */
  RING_LOG2: 0x10,
  /** Next slot the GPU fetches (read-only), in slots, modulo ring size. */
  RING_HEAD: 0x14,
  /** Doorbell: the slot after the last command published by the driver. */
  RING_TAIL: 0x18,
  /** CTRL: ENABLE, IRQ_EN, RESET (self-clearing), HALT_ON_FAULT. */
  CTRL: 0x1c,
  /** STATUS (read-only): BUSY, STALLED, HALTED, FAULTED. */
  STATUS: 0x20,
  /** INT_STATUS: DONE, FAULT, STALL, HALT; write 1 to clear. */
  INT_STATUS: 0x24,
  /** INT_MASK: which INT_STATUS bits signal the MSI. */
  INT_MASK: 0x28,
  /** MSI doorbell address (bus address), 64-bit. */
  MSI_ADDR: 0x30,
  MSI_DATA: 0x38,
  /** FAULT_STATUS: first fault since cleared (see FAULT_*); writing 1 to VALID clears the record. */
  FAULT_STATUS: 0x40,
  /** Bus address of the first fault since FAULT_STATUS was cleared, 64-bit. */
  FAULT_ADDR: 0x48,
  /** Faulting transactions since reset or since software wrote 0 (saturating). */
  FAULT_COUNT: 0x50,
  /** Transactions of this GPU currently stalled in the IOMMU (read-only). */
  STALL_COUNT: 0x54,
  /** Value of the last FENCE command executed. */
  FENCE: 0x58,
  /** Commands completed since reset. */
  CMD_DONE: 0x5c,
  /** Ring slot of the command executing (or last executed), read-only. */
  CMD_SLOT: 0x60,
} as const;

export const GPU_CTRL_ENABLE = 1 << 0;
export const GPU_CTRL_IRQ_EN = 1 << 1;
/** Write 1: abandon all work, clear head/tail/status (stalled transactions are abandoned when they complete). */
export const GPU_CTRL_RESET = 1 << 2;
/** Stop fetching commands after a command that took a fault (as most GPUs do); else carry on. */
export const GPU_CTRL_HALT_ON_FAULT = 1 << 3;

/** Work is in progress (a command executing or commands pending). */
export const GPU_STATUS_BUSY = 1 << 0;
/** At least one of the GPU's transactions is stalled in the IOMMU (STALL_COUNT > 0). */
export const GPU_STATUS_STALLED = 1 << 1;
/** Command processing stopped after a fault (HALT_ON_FAULT); cleared by RESET. */
export const GPU_STATUS_HALTED = 1 << 2;
/** FAULT_STATUS.VALID, mirrored. */
export const GPU_STATUS_FAULTED = 1 << 3;

export const GPU_INT_DONE = 1 << 0;
export const GPU_INT_FAULT = 1 << 1;
export const GPU_INT_STALL = 1 << 2;
export const GPU_INT_HALT = 1 << 3;

export const GPU_FAULT_VALID = 1 << 0;
/** The first fault was a write. */
export const GPU_FAULT_WRITE = 1 << 1;
/** The first fault stalled (rather than terminated). */
export const GPU_FAULT_STALL = 1 << 2;
/** More than one fault since the record was cleared. */
export const GPU_FAULT_MULTI = 1 << 3;
/** Unit that took the first fault: 0..WARPS-1 a warp, 0xfe the MSI writer, 0xff the command fetcher. */
export const GPU_FAULT_UNIT_SHIFT = 8;
export const GPU_FAULT_UNIT_FETCH = 0xff;
export const GPU_FAULT_UNIT_MSI = 0xfe;
/** Opcode of the command executing at the first fault. */
export const GPU_FAULT_OPCODE_SHIFT = 16;
/** The IOMMU port outcome of the first fault (3 fault, 2 abort, 5 stalled ...). */
export const GPU_FAULT_PORT_SHIFT = 24;

/** Command slots: 32 bytes, eight little-endian 32-bit words. */
export const GPU_CMD_BYTES = 32;

export const GpuOp = {
  NOP: 0x00,
  /** COPY src (w1,w2) -> dst (w3,w4), w5 bytes. Pages go to warps round robin. */
  COPY: 0x01,
  /** FILL dst (w1,w2) with the 32-bit pattern w3, w5 bytes. */
  FILL: 0x02,
  /** SHADER: out (w3,w4)[i] = in (w1,w2)[i] + w6 for each 32-bit word, w5 bytes. */
  SHADER: 0x03,
  /** FENCE: write w3 to (w1,w2) (if nonzero), set the FENCE register; flag IRQ raises INT_DONE. */
  FENCE: 0x04,
} as const;

export const GPU_OP_NAMES: Record<number, string> = {
  0: 'NOP',
  1: 'COPY',
  2: 'FILL',
  3: 'SHADER',
  4: 'FENCE',
};

/** w0 flags (15:8). */
export const GPU_CMD_FLAG_IRQ = 1 << 8;

export interface GpuCommand {
  op: number;
  flags?: number;
  /** COPY/SHADER source, FILL/FENCE destination. */
  a?: number;
  /** COPY/SHADER destination. */
  b?: number;
  /** FILL pattern, FENCE value. */
  value?: number;
  /** COPY/FILL/SHADER length in bytes. */
  len?: number;
  /** SHADER addend. */
  k?: number;
}

/** Encode a command into eight words. */
export function encodeGpuCommand(c: GpuCommand, out = new Uint32Array(8)): Uint32Array {
  out.fill(0);
  const a = c.a ?? 0;
  const b = c.b ?? 0;
  out[0] = ((c.op & 0xff) | ((c.flags ?? 0) & 0xff00)) >>> 0;
  out[1] = a >>> 0;
  out[2] = Math.floor(a / 4294967296) >>> 0;
  if (c.op === GpuOp.FILL || c.op === GpuOp.FENCE) out[3] = (c.value ?? 0) >>> 0;
  else {
    out[3] = b >>> 0;
    out[4] = Math.floor(b / 4294967296) >>> 0;
  }
  out[5] = (c.len ?? 0) >>> 0;
  out[6] = (c.k ?? 0) >>> 0;
  return out;
}

/** Decode eight words (for snapshots and traces). */
export function decodeGpuCommand(w: ArrayLike<number>): Required<GpuCommand> & { name: string } {
  const op = w[0]! & 0xff;
  const a = (w[2]! >>> 0) * 4294967296 + (w[1]! >>> 0);
  const fillLike = op === GpuOp.FILL || op === GpuOp.FENCE;
  return {
    op,
    name: GPU_OP_NAMES[op] ?? `op 0x${op.toString(16)}`,
    flags: w[0]! & 0xff00,
    a,
    b: fillLike ? 0 : (w[4]! >>> 0) * 4294967296 + (w[3]! >>> 0),
    value: fillLike ? w[3]! >>> 0 : 0,
    len: w[5]! >>> 0,
    k: w[6]! >>> 0,
  };
}
