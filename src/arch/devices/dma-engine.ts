/**
 * Register interface of the iommu-lab DMA copy engine (`iommu-lab,dma-engine`): a simple
 * memory-to-memory copier with MSI completion, as found on many SoCs. Shared by the
 * hardware model and any software that drives it.
 */

export const DMA_ENGINE_ID_VALUE = 0x444d4131; // "DMA1"
export const DMA_ENGINE_WINDOW = 0x1000;

export const DmaEngineReg = {
  ID: 0x00,
  /** Source address, 64-bit (bus address: physical, or IOVA behind an IOMMU). */
  SRC: 0x08,
  /** Destination address, 64-bit. */
  DST: 0x10,
  /** Transfer length in bytes. */
  LEN: 0x18,
  /** CTRL.START (bit 0) starts a transfer; CTRL.IRQ_EN (bit 1) signals the MSI at the end. */
  CTRL: 0x1c,
  /** STATUS: BUSY (0), DONE (1), ERROR (2); DONE and ERROR are write-1-to-clear. */
  STATUS: 0x20,
  /** MSI doorbell address, 64-bit. */
  MSI_ADDR: 0x28,
  MSI_DATA: 0x30,
  /** Bytes transferred by the current or last transfer. */
  BYTES_DONE: 0x34,
  /** Bus address at which the last transfer failed. 64-bit. */
  ERR_ADDR: 0x38,
} as const;

export const DMA_CTRL_START = 1 << 0;
export const DMA_CTRL_IRQ_EN = 1 << 1;
export const DMA_STATUS_BUSY = 1 << 0;
export const DMA_STATUS_DONE = 1 << 1;
export const DMA_STATUS_ERROR = 1 << 2;
