// The name-checking proxy behind domain allow-lists (`allow:pypi.org,*.x.com`).
// The firewall sends every TCP connection to port 80 or 443 from a VM uid
// with domain rules here (nftables DNAT, keyed on the uid). The proxy finds
// which VM it came from (the peer socket's owner in /proc/net/tcp, where the
// original destination is also recorded), reads the name the guest asked for
// (TLS SNI or HTTP Host), checks it against that VM's list, resolves it on
// the host (so DNS answers inside the guest cannot widen anything), refuses
// answers in blocked ranges, and splices the connection with backpressure.
// The guest's own choice of address is never used.
import { promises as dns } from 'node:dns';
import { readFile } from 'node:fs/promises';
import { BlockList, connect, createServer, isIPv4, type Server, type Socket } from 'node:net';
import { networkInterfaces } from 'node:os';
import { domainAllowed, MAX_HELLO_BYTES, requestedName } from './egress-names.js';

/** How long a guest has to send its ClientHello or request head. */
const HELLO_TIMEOUT_MS = 10_000;
const CONNECT_TIMEOUT_MS = 10_000;
/** A spliced connection with no traffic either way for this long is closed. */
const IDLE_TIMEOUT_MS = 5 * 60_000;
/** Connections one VM may have through the proxy at once. */
const MAX_CONNECTIONS_PER_VM = 256;
const LOOKUP_TIMEOUT_MS = 10_000;

export interface ProxyOptions {
  blockedV4: readonly string[];
  blockedV6: readonly string[];
  /** Ranges the operator allowed despite the block list. */
  operatorAllow: readonly string[];
  log?: (message: string) => void;
}

function subnetList(cidrs: readonly string[]): BlockList {
  const list = new BlockList();
  for (const cidr of cidrs) {
    const [address = '', prefix = ''] = cidr.split('/');
    list.addSubnet(address, Number(prefix), isIPv4(address) ? 'ipv4' : 'ipv6');
  }
  return list;
}

/** `a.b.c.d:port` as /proc/net/tcp writes it (little-endian hex address, hex port). */
export function procNetAddress(address: string, port: number): string {
  const bytes = address.split('.').map(Number).reverse();
  const hex = bytes.map((b) => b.toString(16).padStart(2, '0')).join('');
  return `${hex}:${port.toString(16).padStart(4, '0')}`.toUpperCase();
}

/** The inverse, for the remote address column. */
export function fromProcNetAddress(text: string): { address: string; port: number } | null {
  const m = /^([0-9A-F]{8}):([0-9A-F]{4})$/.exec(text);
  if (!m) return null;
  const n = m[1]!;
  const bytes = [6, 4, 2, 0].map((i) => parseInt(n.slice(i, i + 2), 16));
  return { address: bytes.join('.'), port: parseInt(m[2]!, 16) };
}

/** The owner uid and original destination of the host socket whose local end is `address:port`. */
export async function socketOwner(
  address: string,
  port: number,
): Promise<{ uid: number; destination: { address: string; port: number } } | null> {
  const wanted = procNetAddress(address, port);
  const table = await readFile('/proc/net/tcp', 'utf8');
  for (const line of table.split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields[1] !== wanted) continue;
    const destination = fromProcNetAddress(fields[2] ?? '');
    const uid = Number(fields[7]);
    if (destination && Number.isInteger(uid)) return { uid, destination };
  }
  return null;
}

export class EgressProxy {
  private server: Server | null = null;
  private starting: Promise<number> | null = null;
  private readonly domainsByUid = new Map<number, readonly string[]>();
  // One list per family: Node's BlockList matches IPv4 addresses against
  // IPv4-mapped IPv6 rules, and ::ffff:0:0/96 is on the IPv6 block list.
  private readonly blocked: Record<'ipv4' | 'ipv6', BlockList>;
  private readonly operator: BlockList;
  private readonly open = new Set<Socket>();
  private readonly perUid = new Map<number, number>();

  constructor(private readonly opts: ProxyOptions) {
    this.blocked = { ipv4: subnetList(opts.blockedV4), ipv6: subnetList(opts.blockedV6) };
    this.operator = subnetList(opts.operatorAllow);
  }

  /** The loopback port it listens on (started on first use). */
  port(): Promise<number> {
    this.starting ??= new Promise<number>((resolve, reject) => {
      // Half-open both ways: a client that shuts down its sending side (nc at
      // the end of its input) still gets the answer.
      const server = createServer({ allowHalfOpen: true }, (socket) => {
        this.handle(socket).catch(() => socket.destroy());
      });
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        this.server = server;
        server.unref(); // sandboxes, not the proxy, keep a process alive
        resolve((server.address() as { port: number }).port);
      });
    });
    this.starting.catch(() => (this.starting = null));
    return this.starting;
  }

  allow(uid: number, domains: readonly string[]): void {
    if (domains.length > 0) this.domainsByUid.set(uid, domains);
    else this.domainsByUid.delete(uid);
  }

  async close(): Promise<void> {
    for (const socket of this.open) socket.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  /** Whether the host may connect to `address` for a guest: public, or allowed by the operator, never the host's own. */
  acceptable(address: string): boolean {
    const family = isIPv4(address) ? 'ipv4' : 'ipv6';
    const local = Object.values(networkInterfaces())
      .flat()
      .some((i) => i?.address === address);
    if (local) return false;
    return this.operator.check(address, family) || !this.blocked[family].check(address, family);
  }

  private refuse(socket: Socket, why: string): void {
    this.opts.log?.(`egress proxy: refused: ${why}`);
    socket.resetAndDestroy();
  }

  private async handle(guest: Socket): Promise<void> {
    this.open.add(guest);
    guest.once('close', () => this.open.delete(guest));
    guest.on('error', () => undefined);
    const owner =
      guest.remoteAddress && guest.remotePort
        ? await socketOwner(guest.remoteAddress.replace(/^::ffff:/, ''), guest.remotePort).catch(() => null)
        : null;
    const domains = owner ? this.domainsByUid.get(owner.uid) : undefined;
    if (!owner || !domains) return this.refuse(guest, 'not from a VM with domain rules');
    const count = this.perUid.get(owner.uid) ?? 0;
    if (count >= MAX_CONNECTIONS_PER_VM)
      return this.refuse(guest, `uid ${owner.uid} has ${count} connections open`);
    this.perUid.set(owner.uid, count + 1);
    guest.once('close', () => {
      const left = (this.perUid.get(owner.uid) ?? 1) - 1;
      if (left > 0) this.perUid.set(owner.uid, left);
      else this.perUid.delete(owner.uid);
    });
    const head = await readHead(guest).catch((err: Error) => err);
    if (head instanceof Error) return this.refuse(guest, head.message);
    const asked = requestedName(head);
    if (asked.kind !== 'name') return this.refuse(guest, asked.kind === 'invalid' ? asked.reason : 'no name');
    if (!domainAllowed(asked.name, domains)) return this.refuse(guest, `${asked.name} is not on the list`);
    const addresses = await Promise.race([
      dns.lookup(asked.name, { all: true }),
      new Promise<never>((_, reject) => setTimeout(reject, LOOKUP_TIMEOUT_MS).unref()),
    ]).catch(() => []);
    const target = addresses.map((a) => a.address).find((a) => this.acceptable(a));
    if (!target) return this.refuse(guest, `${asked.name} resolves to no public address`);
    this.opts.log?.(`egress proxy: ${asked.name} → ${target}:${owner.destination.port} for uid ${owner.uid}`);
    const upstream = connect({ host: target, port: owner.destination.port, allowHalfOpen: true });
    this.open.add(upstream);
    upstream.once('close', () => this.open.delete(upstream));
    const fail = () => {
      guest.destroy();
      upstream.destroy();
    };
    upstream.setTimeout(CONNECT_TIMEOUT_MS, fail);
    upstream.once('error', fail);
    guest.once('error', fail);
    upstream.once('connect', () => {
      upstream.setTimeout(IDLE_TIMEOUT_MS, fail);
      guest.setTimeout(IDLE_TIMEOUT_MS, fail);
      upstream.write(head);
      // pipe() pauses the faster side when the other's buffer is full: no unbounded growth.
      guest.pipe(upstream);
      upstream.pipe(guest);
    });
  }
}

/** The guest's first bytes, up to the end of its ClientHello or request head (bounded in size and time). */
function readHead(socket: Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const done = (err: Error | null) => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.pause();
      if (err) reject(err);
      else resolve(buf);
    };
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const asked = requestedName(buf.subarray(0, MAX_HELLO_BYTES));
      if (asked.kind !== 'incomplete' || buf.length >= MAX_HELLO_BYTES) done(null);
    };
    const onEnd = () => done(new Error('closed before asking for a name'));
    const timer = setTimeout(() => done(new Error('no name within 10 s')), HELLO_TIMEOUT_MS);
    socket.on('data', onData);
    socket.once('end', onEnd);
  });
}
