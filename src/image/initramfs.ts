// The initramfs: a deterministic, uncompressed newc cpio holding a static
// busybox (+ applet links), the kernel modules in load order, guest/init/init
// as /init and forkd-init, and for initramfs-only guests the agent itself.
// Uncompressed because under TCG unpacking beats decompressing (measured:
// gzip saved nothing in boot time for a few MB).
import { readFile, writeFile } from 'node:fs/promises';
import { cpioNewc, type CpioEntry } from './cpio.js';
import { readModule, resolveKernelModules } from './modules.js';
import { run } from '../util/run.js';

export interface InitramfsInput {
  /** The kernel's module tree; null: no modules (a kernel that is not forkd's). */
  modulesDir: string | null;
  modules: readonly string[];
  initPath: string;
  forkdInitPath: string;
  busyboxPath: string;
  /** Put the agent in the initramfs (guests without a root filesystem). */
  agentPath: string | null;
  /** More files for the archive (a user-rootfs guest's runtime and its set-up script). */
  extraFiles?: readonly { path: string; data: Buffer; mode?: number }[] | undefined;
  signal?: AbortSignal | undefined;
}

/** Busybox applet paths (e.g. "sbin/insmod"), from the binary itself. */
export async function busyboxApplets(busyboxPath: string, signal?: AbortSignal): Promise<string[]> {
  const { stdout } = await run([busyboxPath, '--list-full'], { signal });
  return stdout
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('/'));
}

const ETC_FILES: Record<string, string> = {
  'etc/passwd': 'root:x:0:0:root:/root:/bin/sh\n',
  'etc/group': 'root:x:0:\ntty:x:5:\n',
  'etc/hosts': '127.0.0.1\tlocalhost\n127.0.1.1\tforkd\n',
  'etc/resolv.conf': 'nameserver 10.0.2.3\n',
  'etc/hostname': 'forkd\n',
};

/** The archive's entries; the module names in load order go to lib/modules/load.list. */
export async function initramfsEntries(
  input: InitramfsInput,
): Promise<{ entries: CpioEntry[]; modules: string[] }> {
  const entries: CpioEntry[] = [];
  for (const dir of ['proc', 'sys', 'dev', 'run', 'newroot', 'var', 'usr/lib/forkd', 'lib/modules']) {
    entries.push({ type: 'dir', path: dir });
  }
  entries.push({ type: 'dir', path: 'tmp', mode: 0o1777 }, { type: 'dir', path: 'root', mode: 0o700 });
  // The kernel opens /dev/console for init's stdio before anything is mounted.
  entries.push({ type: 'char', path: 'dev/console', major: 5, minor: 1, mode: 0o600 });
  entries.push({ type: 'char', path: 'dev/null', major: 1, minor: 3, mode: 0o666 });

  entries.push({ type: 'file', path: 'bin/busybox', data: await readFile(input.busyboxPath), mode: 0o755 });
  entries.push({ type: 'symlink', path: 'usr/lib/forkd/busybox', target: '/bin/busybox' });
  for (const applet of await busyboxApplets(input.busyboxPath, input.signal)) {
    if (applet === 'bin/busybox') continue;
    entries.push({ type: 'symlink', path: applet, target: '/bin/busybox' });
  }

  entries.push({ type: 'file', path: 'init', data: await readFile(input.initPath), mode: 0o755 });
  entries.push({
    type: 'file',
    path: 'sbin/forkd-init',
    data: await readFile(input.forkdInitPath),
    mode: 0o755,
  });
  if (input.agentPath) {
    entries.push({
      type: 'file',
      path: 'usr/bin/forkd-agent',
      data: await readFile(input.agentPath),
      mode: 0o755,
    });
  }
  for (const extra of input.extraFiles ?? []) entries.push({ type: 'file', ...extra });
  for (const [path, text] of Object.entries(ETC_FILES)) {
    entries.push({ type: 'file', path, data: Buffer.from(text) });
  }

  const { modulesDir } = input;
  const order = modulesDir === null ? [] : await resolveKernelModules(modulesDir, input.modules);
  if (modulesDir !== null) {
    for (const mod of order) {
      entries.push({
        type: 'file',
        path: `lib/modules/${mod.name}.ko`,
        data: await readModule(modulesDir, mod, input.signal),
      });
    }
  }
  const names = order.map((m) => m.name);
  entries.push({
    type: 'file',
    path: 'lib/modules/load.list',
    data: Buffer.from(names.map((n) => n + '\n').join('')),
  });
  return { entries, modules: names };
}

/** Write the initramfs to `outPath`; returns its size and the modules it loads. */
export async function buildInitramfs(
  input: InitramfsInput,
  outPath: string,
): Promise<{ bytes: number; modules: string[] }> {
  const { entries, modules } = await initramfsEntries(input);
  const archive = cpioNewc(entries);
  await writeFile(outPath, archive);
  return { bytes: archive.length, modules };
}
