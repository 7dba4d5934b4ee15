/**
 * Writes a file so it is never seen half-written (Node only): the bytes go to a temporary file beside it,
 * are synced to disk, and the temporary file is renamed over the target; the directory is then synced so
 * the rename itself survives a crash. A failure removes the temporary file and leaves the target as it was.
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const fs = await import('node:fs/promises');
  const { dirname } = await import('node:path');
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    const fh = await fs.open(tmp, 'w');
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fs.rename(tmp, path);
  } catch (e) {
    await fs.rm(tmp, { force: true });
    throw e;
  }
  try {
    const dir = await fs.open(dirname(path), 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  } catch {
    // Directories cannot be opened or synced on some platforms (Windows); the rename is still atomic.
  }
}
