// DMA API vocabulary: directions, attributes, the error cookie, scatterlists.

export type DmaDirection = 'bidirectional' | 'to-device' | 'from-device' | 'none';

/** DMA_MAPPING_ERROR (~0 in Linux; -1 here: never a valid DMA address). */
export const DMA_MAPPING_ERROR = -1;

export const DMA_ATTR_PRIVILEGED = 1 << 9;
export const DMA_ATTR_SKIP_CPU_SYNC = 1 << 5;

/** One scatterlist entry: a physically contiguous piece, and what the mapping made of it. */
export interface ScatterEntry {
  /** Physical address of the piece (page + offset). */
  phys: number;
  length: number;
  /** Filled by dma_map_sg for the first `count` entries: merged DMA segments. */
  dmaAddress: number;
  dmaLength: number;
}

export function sgTable(pieces: ReadonlyArray<{ phys: number; length: number }>): ScatterEntry[] {
  return pieces.map((p) => ({ phys: p.phys, length: p.length, dmaAddress: DMA_MAPPING_ERROR, dmaLength: 0 }));
}
