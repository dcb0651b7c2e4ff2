/**
 * Errors the public API throws for bad calls (a missing device, an impossible option). Kernel
 * calls themselves never throw for bad arguments: like Linux they return a negative errno or
 * DMA_MAPPING_ERROR, which the API passes through unchanged.
 */

/** A call to the iommu-lab API that cannot be done as asked; `message` says why. */
export class LabError extends Error {
  override readonly name = 'LabError';
}

/** A scenario's expectation that did not hold (`ctx.expect`), or a failed run. */
export class ScenarioFailure extends Error {
  override readonly name = 'ScenarioFailure';
}
