// Test helper: boot a built image under QEMU TCG (microvm, the devices the VMM
// layer uses) and wait for a console line. Not a test file itself.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { GuestImage } from '../../src/image/index.js';

export const AGENT_MARKER = 'forkd-init: agent starting';

export interface BootResult {
  /** Wall time from spawning QEMU to the marker line. */
  wallMs: number;
  /** Guest uptime the init printed with the marker, if any. */
  guestUptimeS: number | null;
  console: string;
}

/** The repo's guest/ dir, and its agent binary (built with make if missing; null if that fails). */
export function guestAgent(): { guestDir: string; agentPath: string | null } {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'guest', 'Makefile'))) dir = dirname(dir);
  const guestDir = join(dir, 'guest');
  const agentPath = join(guestDir, 'build', 'forkd-agent');
  if (!existsSync(agentPath)) spawnSync('make', ['-s', '-C', guestDir], { stdio: 'ignore' });
  return { guestDir, agentPath: existsSync(agentPath) ? agentPath : null };
}

export async function bootUntil(
  image: GuestImage,
  opts: { marker?: string; timeoutMs?: number; sockDir: string },
): Promise<BootResult> {
  const marker = opts.marker ?? AGENT_MARKER;
  const args = [
    '-accel',
    'tcg',
    '-machine',
    'microvm',
    '-m',
    String(Math.min(image.memoryMib, 512)),
    '-nographic',
    '-no-reboot',
    '-nodefaults',
    '-kernel',
    image.kernelPath,
    '-initrd',
    image.initrdPath,
    '-append',
    image.kernelCmdline,
    '-serial',
    'stdio',
    '-device',
    'virtio-serial-device',
    '-chardev',
    `socket,id=agent,path=${join(opts.sockDir, 'agent.sock')},server=on,wait=off`,
    '-device',
    'virtserialport,chardev=agent,name=forkd.agent',
    '-device',
    'virtio-rng-device',
    '-netdev',
    'user,id=net0',
    '-device',
    'virtio-net-device,netdev=net0',
  ];
  if (image.rootfsPath) {
    // snapshot=on: writes go to a throwaway temp file, the image stays pristine.
    args.push('-drive', `file=${image.rootfsPath},format=raw,if=none,id=root,snapshot=on`);
    args.push('-device', 'virtio-blk-device,drive=root');
  }
  const start = Date.now();
  const child = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  try {
    return await new Promise<BootResult>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no '${marker}' within ${opts.timeoutMs ?? 60000} ms; console:\n${output}`)),
        opts.timeoutMs ?? 60000,
      );
      const onData = (chunk: Buffer) => {
        output += chunk.toString('utf8');
        const line = output.split('\n').find((l) => l.includes(marker));
        if (line !== undefined) {
          clearTimeout(timer);
          const uptime = /uptime ([\d.]+)s/.exec(line)?.[1];
          resolve({
            wallMs: Date.now() - start,
            guestUptimeS: uptime ? Number(uptime) : null,
            console: output,
          });
        }
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', onData);
      child.on('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`qemu exited (${code}) before '${marker}'; console:\n${output}`));
      });
    });
  } finally {
    child.kill('SIGKILL');
  }
}

/** Wait a little longer after the marker, collecting more console output. */
export function settle(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
