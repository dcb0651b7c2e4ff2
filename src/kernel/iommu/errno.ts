// Linux errno values returned by the IOMMU core, io-pgtable and the DMA API (0 or -errno, as in the kernel).
// The same numbers as src/kernel/base/errno.ts, plus the few the IOMMU code needs that it lacks.

export const ENOENT = 2;
export const ENOMEM = 12;
export const EFAULT = 14;
export const EBUSY = 16;
export const EEXIST = 17;
export const ENODEV = 19;
export const EINVAL = 22;
export const ENOSPC = 28;
export const ERANGE = 34;
export const EOPNOTSUPP = 95;

const NAMES: Record<number, string> = {
  [ENOENT]: 'ENOENT',
  [ENOMEM]: 'ENOMEM',
  [EFAULT]: 'EFAULT',
  [EBUSY]: 'EBUSY',
  [EEXIST]: 'EEXIST',
  [ENODEV]: 'ENODEV',
  [EINVAL]: 'EINVAL',
  [ENOSPC]: 'ENOSPC',
  [ERANGE]: 'ERANGE',
  [EOPNOTSUPP]: 'EOPNOTSUPP',
};

/** "-EEXIST" for -17. */
export function errName(err: number): string {
  const n = Math.abs(err);
  return `-${NAMES[n] ?? `E${n}`}`;
}
