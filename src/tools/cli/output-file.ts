/**
 * Output files on the real file system, written so that a user's file is never lost: checked
 * before a run without being touched, then replaced in one step when the run writes it.
 */

import { constants } from 'node:fs';
import { access, chmod, open, realpath, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

const errno = (e: unknown) => (e as NodeJS.ErrnoException).code;

/** Throws, with the reason, if `path` could not be written; creates and changes nothing. */
export async function checkWritable(path: string): Promise<void> {
  const st = await stat(path).catch((e: unknown) => {
    if (errno(e) === 'ENOENT') return null;
    throw e;
  });
  if (st === null) {
    // a new file: its folder must exist and take new files
    const dir = dirname(path);
    if (!(await stat(dir)).isDirectory()) throw new Error(`${dir} is not a directory`);
    await access(dir, constants.W_OK);
    return;
  }
  if (st.isDirectory()) throw new Error('it is a directory');
  await access(path, constants.W_OK);
}

let serial = 0;

/**
 * Replace the file at `path` with `data`: write a temporary file next to it, flush it, rename it
 * over the old one. A failure leaves the old file as it was and no temporary file behind. Writes
 * through a symbolic link (the link stays); writes a device or a pipe (/dev/null, /dev/stdout)
 * directly, never renaming over it; keeps an existing file's permissions.
 */
export async function replaceFile(path: string, data: string): Promise<void> {
  let target = path;
  let mode: number | undefined;
  try {
    target = await realpath(path);
    const st = await stat(target);
    if (!st.isFile()) return await writeFile(target, data);
    mode = st.mode & 0o7777;
  } catch (e) {
    if (errno(e) !== 'ENOENT') throw e;
  }
  const tmp = join(dirname(target), `.${basename(target)}.${process.pid}.${++serial}.tmp`);
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(tmp, 'wx', mode ?? 0o666);
  } catch (e) {
    // a folder that takes no new files, but the file itself may be writable: write it in place
    if (mode !== undefined && ['EACCES', 'EPERM', 'EROFS'].includes(errno(e) ?? '')) {
      return await writeFile(target, data);
    }
    throw e;
  }
  try {
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    if (mode !== undefined) await chmod(tmp, mode); // the umask may have narrowed it
    await rename(tmp, target);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw e;
  }
}
