import { constants } from 'node:fs';
import {
  access,
  chmod,
  lstat,
  mkdir,
  readdir,
  readFile,
  readlink,
  realpath,
  rename,
  stat,
  unlink,
  writeFile,
} from 'node:fs/promises';
import { dirname, join, posix, relative } from 'node:path';
import { TetherError } from '../../lib/errors.js';

/**
 * The one port through which profile code reads and writes host state (sysfs, procfs and
 * the few config files Tether owns). Every path is absolute *inside the host*
 * (`/sys/bus/pci/...`); the implementation maps it under a root, so the same code runs on a
 * real node (root `/`) and against a fixture tree (root `/tmp/xyz`).
 *
 * Writes to kernel attributes (`writeAttr`) are plain single writes, like `echo 8 >
 * sriov_numvfs`; writes to Tether-owned files (`writeConfig`) are atomic (temp + rename).
 */
export interface HostFs {
  readonly root: string;
  /** Content of a file, or undefined when it does not exist. */
  read(path: string): Promise<string | undefined>;
  exists(path: string): Promise<boolean>;
  isDir(path: string): Promise<boolean>;
  /** Entry names, or [] when the directory does not exist. */
  list(path: string): Promise<string[]>;
  /** Target of a symlink as stored, or undefined. */
  readlink(path: string): Promise<string | undefined>;
  /** Host-absolute path after resolving symlinks (inside the root), or undefined. */
  resolve(path: string): Promise<string | undefined>;
  /** Writes a kernel attribute (sysfs/procfs). Errors carry the errno code (EBUSY, ...). */
  writeAttr(path: string, value: string): Promise<void>;
  /** Writes a Tether-owned file atomically, creating parent directories. */
  writeConfig(path: string, content: string): Promise<void>;
  remove(path: string): Promise<void>;
}

/** Strips a trailing newline and surrounding blanks, as sysfs attributes need. */
export function attr(v: string | undefined): string | undefined {
  return v === undefined ? undefined : v.trim();
}

export class RootedHostFs implements HostFs {
  constructor(readonly root: string) {}

  /** Maps a host-absolute path to the real path under the root. */
  real(path: string): string {
    if (!path.startsWith('/'))
      throw new TetherError('TETHER_E_INTERNAL', `host path must be absolute: ${path}`);
    const norm = posix.normalize(path);
    return this.root === '/' ? norm : join(this.root, norm);
  }

  async read(path: string): Promise<string | undefined> {
    try {
      return await readFile(this.real(path), 'utf8');
    } catch (e) {
      // sysfs attributes fail in many ways (EOPNOTSUPP for phys_port_name of a virtual
      // device, ENODATA, EINVAL, ...): for a reader they all mean "no value".
      if (typeof (e as { code?: unknown }).code === 'string') return undefined;
      throw e;
    }
  }

  async exists(path: string): Promise<boolean> {
    try {
      await access(this.real(path), constants.F_OK);
      return true;
    } catch {
      try {
        await lstat(this.real(path));
        return true;
      } catch {
        return false;
      }
    }
  }

  async isDir(path: string): Promise<boolean> {
    try {
      return (await stat(this.real(path))).isDirectory();
    } catch {
      return false;
    }
  }

  async list(path: string): Promise<string[]> {
    try {
      return (await readdir(this.real(path))).sort(naturalCompare);
    } catch {
      return [];
    }
  }

  async readlink(path: string): Promise<string | undefined> {
    try {
      return await readlink(this.real(path));
    } catch {
      return undefined;
    }
  }

  async resolve(path: string): Promise<string | undefined> {
    try {
      const r = await realpath(this.real(path));
      if (this.root === '/') return r;
      const rootReal = await realpath(this.root);
      const rel = relative(rootReal, r);
      if (rel.startsWith('..')) return undefined;
      return `/${rel}`;
    } catch {
      return undefined;
    }
  }

  async writeAttr(path: string, value: string): Promise<void> {
    // A sysfs attribute is written in place (no temp file, no create).
    await writeFile(this.real(path), value, { flag: this.root === '/' ? 'r+' : 'w' });
  }

  async writeConfig(path: string, content: string): Promise<void> {
    const p = this.real(path);
    await mkdir(dirname(p), { recursive: true });
    const tmp = `${p}.tether-tmp-${process.pid}`;
    await writeFile(tmp, content, { mode: 0o644 });
    // writeFile's mode is masked by the umask (the first-boot unit runs with UMask=0077), and
    // these files are read by others (systemd-networkd runs as systemd-network).
    await chmod(tmp, 0o644);
    await rename(tmp, p);
  }

  async remove(path: string): Promise<void> {
    try {
      await unlink(this.real(path));
    } catch (e) {
      if (!isErrno(e, 'ENOENT')) throw e;
    }
  }
}

export function isErrno(e: unknown, ...codes: string[]): boolean {
  return typeof e === 'object' && e !== null && codes.includes(String((e as { code?: unknown }).code));
}

/** Sorts `virtfn2` before `virtfn10`, `cpu9` before `cpu10`. */
export function naturalCompare(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}
