// The name a guest's connection asks for, read from its first bytes: the SNI
// of a TLS ClientHello, or the Host header of an HTTP request. Pure and
// bounded: the bytes come from a hostile guest, so every length is checked
// against what is there and nothing is allocated from a length field.

/** The most the proxy reads before it must know the name. */
export const MAX_HELLO_BYTES = 16 * 1024;

export type RequestedName =
  | { kind: 'name'; name: string; protocol: 'tls' | 'http' }
  | { kind: 'incomplete' }
  | { kind: 'invalid'; reason: string };

const HOSTNAME = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

function hostname(raw: string, protocol: 'tls' | 'http'): RequestedName {
  const name = raw.toLowerCase().replace(/\.$/, '');
  return HOSTNAME.test(name)
    ? { kind: 'name', name, protocol }
    : { kind: 'invalid', reason: 'not a host name' };
}

/** The SNI host name of a TLS ClientHello (RFC 8446 §4.1.2, RFC 6066 §3). */
export function parseClientHello(buf: Buffer): RequestedName {
  // Record header: type 22 (handshake), version, length.
  if (buf.length < 5) return { kind: 'incomplete' };
  if (buf[0] !== 0x16) return { kind: 'invalid', reason: 'not a TLS handshake' };
  const recordLength = buf.readUInt16BE(3);
  if (buf.length < 5 + recordLength)
    return buf.length >= MAX_HELLO_BYTES ? { kind: 'invalid', reason: 'too long' } : { kind: 'incomplete' };
  const hello = buf.subarray(5, 5 + recordLength);
  let p = 0;
  const need = (n: number) => p + n <= hello.length;
  if (!need(4) || hello[0] !== 0x01) return { kind: 'invalid', reason: 'not a ClientHello' };
  p += 4; // handshake type, 24-bit length (the hello must fit in one record here)
  if (!need(2 + 32 + 1)) return { kind: 'invalid', reason: 'truncated' };
  p += 2 + 32; // version, random
  p += 1 + hello[p]!; // session id
  if (!need(2)) return { kind: 'invalid', reason: 'truncated' };
  p += 2 + hello.readUInt16BE(p); // cipher suites
  if (!need(1)) return { kind: 'invalid', reason: 'truncated' };
  p += 1 + hello[p]!; // compression methods
  if (!need(2)) return { kind: 'invalid', reason: 'no extensions' };
  const end = p + 2 + hello.readUInt16BE(p);
  p += 2;
  if (end > hello.length) return { kind: 'invalid', reason: 'truncated' };
  while (p + 4 <= end) {
    const type = hello.readUInt16BE(p);
    const length = hello.readUInt16BE(p + 2);
    p += 4;
    if (p + length > end) return { kind: 'invalid', reason: 'truncated' };
    if (type === 0x0000) {
      // server_name: list length, then entries of (type, length, name); host_name is type 0.
      let q = p + 2;
      while (q + 3 <= p + length) {
        const nameType = hello[q]!;
        const nameLength = hello.readUInt16BE(q + 1);
        q += 3;
        if (q + nameLength > p + length) return { kind: 'invalid', reason: 'truncated' };
        if (nameType === 0) return hostname(hello.subarray(q, q + nameLength).toString('latin1'), 'tls');
        q += nameLength;
      }
      return { kind: 'invalid', reason: 'no host name in server_name' };
    }
    p += length;
  }
  return { kind: 'invalid', reason: 'no server_name (SNI)' };
}

/** The Host of an HTTP/1.x request head. */
export function parseHttpHost(buf: Buffer): RequestedName {
  const headEnd = buf.indexOf('\r\n\r\n');
  if (headEnd < 0) {
    return buf.length >= MAX_HELLO_BYTES
      ? { kind: 'invalid', reason: 'request head too long' }
      : { kind: 'incomplete' };
  }
  const lines = buf.subarray(0, headEnd).toString('latin1').split('\r\n');
  if (!/^[A-Z]+ \S+ HTTP\/1\.[01]$/.test(lines[0] ?? ''))
    return { kind: 'invalid', reason: 'not an HTTP/1 request' };
  const hosts = lines.slice(1).filter((l) => /^host\s*:/i.test(l));
  if (hosts.length !== 1) return { kind: 'invalid', reason: 'no single Host header' };
  const value = hosts[0]!.slice(hosts[0]!.indexOf(':') + 1).trim();
  return hostname(value.replace(/:\d{1,5}$/, ''), 'http');
}

/** What a connection's first bytes ask for. */
export function requestedName(buf: Buffer): RequestedName {
  if (buf.length === 0) return { kind: 'incomplete' };
  return buf[0] === 0x16 ? parseClientHello(buf) : parseHttpHost(buf);
}

/** Whether `name` is allowed by `domains` (exact, or `*.suffix` for strict subdomains). */
export function domainAllowed(name: string, domains: readonly string[]): boolean {
  return domains.some((d) =>
    d.startsWith('*.') ? name.endsWith(d.slice(1)) && name.length > d.length - 1 : name === d,
  );
}
