// The host firewall behind the `internet` and `allow:` egress policies. A
// sandbox whose guest may reach the network runs its QEMU in the host's
// network namespace as a uid of its own (see vm-uid.ts); QEMU's user-mode
// network makes ordinary sockets for the guest, so an nftables output chain
// keyed on the socket's uid decides what the guest reaches. Every uid of the
// VM range falls into that chain: a uid with no policy reaches nothing, the
// host's own addresses and the private, link-local, CGNAT, metadata and
// multicast ranges are refused before any policy is looked at (unless the
// operator allowed a range), and only then does a uid's policy accept.
// Kernel-enforced, one table, no process per sandbox. Domain rules add one
// hop: the uid's connections to ports 80 and 443 are sent to this process's
// name-checking proxy (egress-proxy.ts).
import { readFile } from 'node:fs/promises';
import { isIPv4, isIPv6 } from 'node:net';
import { MissingDependencyError } from '../errors.js';
import { run } from '../util/run.js';
import type { EgressPolicy } from './egress.js';
import { VM_UID_RANGE } from './vm-uid.js';
import { EgressProxy } from './egress-proxy.js';

const TABLE = 'inet forkd';

/** Never reachable by a guest unless the operator allows the range. */
export const BLOCKED_V4 = [
  '0.0.0.0/8',
  '10.0.0.0/8',
  '100.64.0.0/10',
  '127.0.0.0/8',
  '169.254.0.0/16',
  '172.16.0.0/12',
  '192.0.0.0/24',
  '192.168.0.0/16',
  '198.18.0.0/15',
  '224.0.0.0/3',
];
export const BLOCKED_V6 = [
  '::/127',
  '::ffff:0:0/96',
  '64:ff9b::/96',
  '100::/64',
  'fc00::/7',
  'fe80::/10',
  'ff00::/8',
];

export interface FirewallOptions {
  /**
   * Ranges the operator lets guests reach despite the block list (`forkd
   * serve --egress-allow-cidr`), already checked and canonical (parseCidr).
   */
  operatorAllow?: readonly string[];
}

async function nft(script: string): Promise<void> {
  await run(['nft', '-f', '/dev/stdin'], { input: script }).catch((err: unknown) => {
    if (err instanceof MissingDependencyError) {
      throw new MissingDependencyError('the internet and allow egress policies need nftables', 'nft', {
        hint: 'install it: apt-get install nftables (or run scripts/setup.sh), or use --egress none',
        cause: err,
      });
    }
    throw err;
  });
}

function family(cidr: string): 'ip' | 'ip6' {
  return cidr.includes(':') ? 'ip6' : 'ip';
}

function elements(values: readonly string[]): string {
  return `{ ${values.join(', ')} }`;
}

/** The host's DNS resolvers (QEMU's user network forwards the guest's 10.0.2.3 to them). */
async function resolvers(): Promise<string[]> {
  const text = await readFile('/etc/resolv.conf', 'utf8').catch(() => '');
  return [...text.matchAll(/^\s*nameserver\s+(\S+)/gm)]
    .map((m) => m[1] ?? '')
    .filter((a) => isIPv4(a) || isIPv6(a));
}

/** The whole table, created atomically by the first engine that needs it. */
export async function tableScript(opts: FirewallOptions): Promise<string> {
  const [first, last] = VM_UID_RANGE;
  const operator = opts.operatorAllow ?? [];
  const dns = await resolvers();
  const set = (name: string, type: string, values: readonly string[], interval = true) =>
    `  set ${name} { typeof ${type}; ${interval ? 'flags interval; ' : ''}${
      values.length > 0 ? `elements = ${elements(values)}; ` : ''
    }}`;
  return [
    `table ${TABLE} {`,
    '  set internet_uids { typeof meta skuid; }',
    '  set network_uids { typeof meta skuid; }',
    '  set proxied_uids { typeof meta skuid; }',
    '  set allow4 { typeof meta skuid . ip daddr; flags interval; }',
    '  set allow6 { typeof meta skuid . ip6 daddr; flags interval; }',
    // A VM uid with domain rules → the port of the name-checking proxy of the forkd process that owns it.
    '  map proxy_ports { typeof meta skuid : tcp dport; }',
    set(
      'operator4',
      'ip daddr',
      operator.filter((c) => family(c) === 'ip'),
    ),
    set(
      'operator6',
      'ip6 daddr',
      operator.filter((c) => family(c) === 'ip6'),
    ),
    set('dns4', 'ip daddr', dns.filter(isIPv4), false),
    set('dns6', 'ip6 daddr', dns.filter(isIPv6), false),
    '  chain nat_output {',
    '    type nat hook output priority -100; policy accept;',
    `    meta skuid ${first}-${last} tcp dport { 80, 443 } dnat ip to 127.0.0.1 : meta skuid map @proxy_ports`,
    '  }',
    '  chain output {',
    '    type filter hook output priority -10; policy accept;',
    `    meta skuid ${first}-${last} jump vm_egress`,
    '  }',
    '  chain vm_egress {',
    '    meta skuid != @network_uids jump deny',
    // Only connections the rule above sent to a proxy (which checks the name itself).
    '    ct status dnat ip daddr 127.0.0.1 meta skuid @proxied_uids accept',
    '    meta l4proto { tcp, udp } th dport 53 ip daddr @dns4 accept',
    '    meta l4proto { tcp, udp } th dport 53 ip6 daddr @dns6 accept',
    '    fib daddr type { local, broadcast, multicast, anycast } jump deny',
    '    ip daddr @operator4 jump by_policy',
    '    ip6 daddr @operator6 jump by_policy',
    `    ip daddr ${elements(BLOCKED_V4)} jump deny`,
    `    ip6 daddr ${elements(BLOCKED_V6)} jump deny`,
    '    jump by_policy',
    '  }',
    '  chain by_policy {',
    '    meta skuid @internet_uids accept',
    '    meta skuid . ip daddr @allow4 accept',
    '    meta skuid . ip6 daddr @allow6 accept',
    '    jump deny',
    '  }',
    '  chain deny {',
    '    meta l4proto tcp reject with tcp reset',
    '    reject with icmpx admin-prohibited',
    '  }',
    '}',
    '',
  ].join('\n');
}

/** The element changes that give `uid` its policy (`add`) or take it away (`delete`). */
export function policyElements(
  verb: 'add' | 'delete',
  uid: number,
  policy: EgressPolicy,
  proxyPort = 0,
): string[] {
  if (policy.mode === 'none') return [];
  const lines = [`${verb} element ${TABLE} network_uids { ${uid} }`];
  if (policy.mode === 'internet') lines.push(`${verb} element ${TABLE} internet_uids { ${uid} }`);
  else {
    for (const cidr of policy.cidrs) {
      lines.push(`${verb} element ${TABLE} allow${family(cidr) === 'ip' ? 4 : 6} { ${uid} . ${cidr} }`);
    }
    if (policy.domains.length > 0) {
      lines.push(`${verb} element ${TABLE} proxied_uids { ${uid} }`);
      lines.push(`${verb} element ${TABLE} proxy_ports { ${uid} : ${proxyPort} }`);
    }
  }
  return lines;
}

function hasDomains(policy: EgressPolicy): policy is Extract<EgressPolicy, { mode: 'allow' }> {
  return policy.mode === 'allow' && policy.domains.length > 0;
}

export class EgressFirewall {
  private installed: Promise<void> | null = null;
  readonly proxy: EgressProxy;

  constructor(private readonly opts: FirewallOptions = {}) {
    this.proxy = new EgressProxy({
      blockedV4: BLOCKED_V4,
      blockedV6: BLOCKED_V6,
      operatorAllow: opts.operatorAllow ?? [],
    });
  }

  /**
   * Create the table once per process. An existing one (another forkd
   * process's, with its sandboxes' elements) is kept as it is, apart from the
   * operator's ranges, which this process's options set.
   */
  install(): Promise<void> {
    this.installed ??= (async () => {
      const exists = await run(['nft', 'list', 'table', ...TABLE.split(' ')]).then(
        () => true,
        () => false,
      );
      // A table from before domain rules lacks the proxy map: made anew (its sandboxes keep running;
      // their elements are re-added as they are next changed).
      const current =
        exists &&
        (await run(['nft', 'list', 'map', ...TABLE.split(' '), 'proxy_ports']).then(
          () => true,
          () => false,
        ));
      if (exists && !current) await nft(`delete table ${TABLE}\n`);
      if (!current) return nft(await tableScript(this.opts));
      const lines = [`flush set ${TABLE} operator4`, `flush set ${TABLE} operator6`];
      for (const cidr of this.opts.operatorAllow ?? []) {
        lines.push(`add element ${TABLE} operator${family(cidr) === 'ip' ? 4 : 6} { ${cidr} }`);
      }
      return nft(lines.join('\n') + '\n');
    })();
    this.installed.catch(() => (this.installed = null));
    return this.installed;
  }

  /** Move `uid` from `previous` to `next` in one atomic transaction. */
  async apply(uid: number, previous: EgressPolicy, next: EgressPolicy): Promise<void> {
    if (previous.mode === 'none' && next.mode === 'none') return;
    await this.install();
    const port = hasDomains(previous) || hasDomains(next) ? await this.proxy.port() : 0;
    // `add` before `delete`: deleting an element that is not there would fail the whole transaction.
    const script = [
      ...policyElements('add', uid, previous, port),
      ...policyElements('delete', uid, previous, port),
      ...policyElements('add', uid, next, port),
    ];
    // The proxy knows the new list before the firewall sends it anything, and forgets the old after.
    if (hasDomains(next)) this.proxy.allow(uid, next.domains);
    await this.transact(script.join('\n') + '\n');
    if (!hasDomains(next)) this.proxy.allow(uid, []);
  }

  private pending: { script: string; resolve: () => void; reject: (err: unknown) => void }[] = [];
  private flushing = false;

  /**
   * Element changes requested together (the children of one fork) go to
   * nft as one transaction: one process instead of one per child. If the
   * batch fails, each change is tried alone, so one bad change fails only
   * its own caller.
   */
  private transact(script: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.pending.push({ script, resolve, reject });
      if (this.pending.length === 1 && !this.flushing) setImmediate(() => void this.flush());
    });
  }

  private async flush(): Promise<void> {
    this.flushing = true;
    while (this.pending.length > 0) {
      const batch = this.pending.splice(0);
      try {
        await nft(batch.map((b) => b.script).join(''));
        for (const b of batch) b.resolve();
      } catch {
        for (const b of batch) await nft(b.script).then(b.resolve, b.reject);
      }
    }
    this.flushing = false;
  }

  /**
   * Take `uid` out of every uid set whatever policy it had (its VM died
   * unseen, its record may be gone): out of network_uids it reaches nothing,
   * so it is safe to hand to another VM. Nothing to do without the table.
   */
  async forget(uid: number): Promise<void> {
    const exists = await run(['nft', 'list', 'table', ...TABLE.split(' ')]).then(
      () => true,
      () => false,
    );
    if (!exists) return;
    const sets = ['network_uids', 'internet_uids', 'proxied_uids'];
    await this.transact(
      sets
        .map((set) => `add element ${TABLE} ${set} { ${uid} }\ndelete element ${TABLE} ${set} { ${uid} }\n`)
        .join(''),
    );
    this.proxy.allow(uid, []);
  }

  /**
   * A sandbox started by an earlier forkd process (a daemon before its
   * restart): its domain rules now go through this process's proxy.
   */
  async adopt(uid: number, policy: EgressPolicy): Promise<void> {
    if (!hasDomains(policy)) return;
    await this.install();
    const port = await this.proxy.port();
    this.proxy.allow(uid, policy.domains);
    await nft(`delete element ${TABLE} proxy_ports { ${uid} }\n`).catch(() => undefined);
    await nft(`add element ${TABLE} proxy_ports { ${uid} : ${port} }\n`);
  }
}
