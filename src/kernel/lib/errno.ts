// Linux errno values. Kernel-model functions return 0 or -errno, as in the kernel.

export const EPERM = 1;
export const ENOENT = 2;
export const EIO = 5;
export const ENXIO = 6;
export const EAGAIN = 11;
export const ENOMEM = 12;
export const EFAULT = 14;
export const EBUSY = 16;
export const EEXIST = 17;
export const ENODEV = 19;
export const EINVAL = 22;
export const ENOSPC = 28;
export const ERANGE = 34;
export const ENOSYS = 38;
export const EOPNOTSUPP = 95;
export const ETIMEDOUT = 110;
/** Kernel-internal: "try again later", the value behind ProbeDefer. */
export const EPROBE_DEFER = 517;

const NAMES: Record<number, string> = {
  [EPERM]: 'EPERM',
  [ENOENT]: 'ENOENT',
  [EIO]: 'EIO',
  [ENXIO]: 'ENXIO',
  [EAGAIN]: 'EAGAIN',
  [ENOMEM]: 'ENOMEM',
  [EFAULT]: 'EFAULT',
  [EBUSY]: 'EBUSY',
  [EEXIST]: 'EEXIST',
  [ENODEV]: 'ENODEV',
  [EINVAL]: 'EINVAL',
  [ENOSPC]: 'ENOSPC',
  [ERANGE]: 'ERANGE',
  [ENOSYS]: 'ENOSYS',
  [EOPNOTSUPP]: 'EOPNOTSUPP',
  [ETIMEDOUT]: 'ETIMEDOUT',
  [EPROBE_DEFER]: 'EPROBE_DEFER',
};

/** "-ENODEV" for -19 (or 19); "-E123" for unknown values. */
export function errnoName(err: number): string {
  const n = Math.abs(err);
  return `-${NAMES[n] ?? `E${n}`}`;
}
