// QEMU's jail: the argv that starts a program inside bubblewrap with its own
// mount, pid, ipc, uts and (unless it needs the host's) network namespace,
// seeing only the paths it is given, as an unprivileged uid with no
// capabilities. Pure: host facts come in as arguments, so tests pin the argv.
//
// On a root host bwrap runs as root (no user namespace needed) and hands the
// program to setpriv, which drops to the VM's own uid, clears every
// capability set and sets no_new_privs before exec. On an unprivileged host
// bwrap makes a user namespace itself and the program keeps the caller's uid.
import { dirname } from 'node:path';

export interface VmIdentity {
  uid: number;
  gid: number;
  /** Supplementary groups (the kvm group, for /dev/kvm under KVM). */
  groups: readonly number[];
}

export interface ConfinementSpec {
  /** The uid/gid to become (root hosts). null: stay the calling user (bwrap's user namespace). */
  identity: VmIdentity | null;
  /** Bound read-only at the same path (files or directories). */
  readOnlyPaths: readonly string[];
  /** Bound read-write at the same path. */
  writablePaths: readonly string[];
  /** Device nodes bound in beside bwrap's minimal /dev (null, zero, urandom…), e.g. /dev/kvm. */
  devices: readonly string[];
  /** `isolated`: a network namespace with only a loopback; `host`: the host's (egress filtered by uid). */
  network: 'isolated' | 'host';
  /** Environment of the confined program (nothing else is inherited). */
  env: Readonly<Record<string, string>>;
}

export interface HostLayout {
  /** /bin, /lib, /lib64, /sbin are symlinks into /usr (Debian since bookworm). */
  mergedUsr: boolean;
  /** Paths that exist among /lib64 and /etc/ld.so.cache (bound only when present). */
  present: ReadonlySet<string>;
}

/** The fd on which bwrap reports the confined program's pid (JSON `child-pid`). */
export const BWRAP_INFO_FD = 5;

/** Every ancestor directory of `paths`, shallowest first, that is not itself bound. */
function ancestors(paths: readonly string[]): string[] {
  const bound = new Set(paths);
  const dirs = new Set<string>();
  for (const path of paths) {
    for (let dir = dirname(path); dir !== '/' && dir !== '.'; dir = dirname(dir)) {
      if (!bound.has(dir)) dirs.add(dir);
    }
  }
  return [...dirs].sort((a, b) => a.split('/').length - b.split('/').length || a.localeCompare(b));
}

function systemBinds(layout: HostLayout): string[] {
  const args = ['--ro-bind', '/usr', '/usr'];
  for (const dir of ['bin', 'sbin', 'lib', 'lib64']) {
    if (dir === 'lib64' && !layout.present.has('/lib64')) continue;
    if (layout.mergedUsr) args.push('--symlink', `usr/${dir}`, `/${dir}`);
    else args.push('--ro-bind', `/${dir}`, `/${dir}`);
  }
  if (layout.present.has('/etc/ld.so.cache')) args.push('--ro-bind', '/etc/ld.so.cache', '/etc/ld.so.cache');
  return args;
}

/** argv that runs `command` confined by `spec`; bwrap reports the program's pid on BWRAP_INFO_FD. */
export function confinedArgv(
  command: readonly string[],
  spec: ConfinementSpec,
  layout: HostLayout,
): string[] {
  const args = [
    'bwrap',
    '--unshare-ipc',
    '--unshare-pid',
    '--unshare-uts',
    '--unshare-cgroup-try',
    ...(spec.network === 'isolated' ? ['--unshare-net'] : []),
    // The program is the namespace's pid 1: no extra reaper per VM, and its
    // host pid (reported on the info fd) is the one forkd signals and records.
    '--as-pid-1',
    '--new-session',
    '--info-fd',
    String(BWRAP_INFO_FD),
    '--clearenv',
    ...systemBinds(layout),
    '--dev',
    '/dev',
    '--proc',
    '/proc',
  ];
  for (const device of spec.devices) args.push('--dev-bind', device, device);
  const binds = [
    ...spec.readOnlyPaths.map((path) => ({ path, flag: '--ro-bind' })),
    ...spec.writablePaths.map((path) => ({ path, flag: '--bind' })),
  ].sort((a, b) => a.path.split('/').length - b.path.split('/').length);
  // bwrap makes missing ancestors 0700 (root-owned): a dropped uid could not
  // walk through them to the paths it was given.
  for (const dir of ancestors(binds.map((b) => b.path))) args.push('--perms', '0755', '--dir', dir);
  for (const { path, flag } of binds) args.push(flag, path, path);
  for (const [name, value] of Object.entries(spec.env)) args.push('--setenv', name, value);
  args.push('--');
  if (spec.identity) {
    const { uid, gid, groups } = spec.identity;
    args.push(
      'setpriv',
      `--reuid=${uid}`,
      `--regid=${gid}`,
      groups.length > 0 ? `--groups=${groups.join(',')}` : '--clear-groups',
      '--inh-caps=-all',
      '--bounding-set=-all',
      '--no-new-privs',
      '--',
    );
  } else {
    args.splice(1, 0, '--unshare-user', '--cap-drop', 'ALL');
  }
  args.push(...command);
  return args;
}
