import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type AddressInfo } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import {
  domainAllowed,
  parseClientHello,
  parseHttpHost,
  requestedName,
} from '../../src/engine/egress-names.js';
import { EgressProxy, fromProcNetAddress, procNetAddress } from '../../src/engine/egress-proxy.js';
import { BLOCKED_V4, BLOCKED_V6 } from '../../src/engine/egress-firewall.js';

/** The first bytes Node's own TLS client sends for `servername`: a real ClientHello. */
async function clientHello(servername: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const server = createServer((socket) => {
      socket.once('data', (chunk: Buffer) => {
        resolve(chunk);
        socket.destroy();
        server.close();
      });
    });
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as AddressInfo).port;
      const client = tlsConnect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false });
      client.on('error', () => undefined);
    });
    server.on('error', reject);
  });
}

test('the SNI of a real ClientHello is read, and every truncation of it is incomplete or invalid, never a name', async () => {
  const hello = await clientHello('PyPI.org');
  assert.deepEqual(parseClientHello(hello), { kind: 'name', name: 'pypi.org', protocol: 'tls' });
  for (let n = 0; n < hello.length; n++) {
    assert.notEqual(requestedName(hello.subarray(0, n)).kind, 'name', `cut at ${n}`);
  }
});

test('the Host of an HTTP request head is read; a missing, doubled or malformed one is refused', () => {
  const head = (h: string) => Buffer.from(`GET / HTTP/1.1\r\n${h}User-Agent: x\r\n\r\n`);
  assert.deepEqual(parseHttpHost(head('Host: Example.ORG:8080\r\n')), {
    kind: 'name',
    name: 'example.org',
    protocol: 'http',
  });
  assert.equal(parseHttpHost(head('')).kind, 'invalid');
  assert.equal(parseHttpHost(head('Host: a.org\r\nHost: b.org\r\n')).kind, 'invalid');
  assert.equal(parseHttpHost(head('Host: a.org/../b\r\n')).kind, 'invalid');
  assert.equal(parseHttpHost(Buffer.from('GET / HTTP/1.1\r\nHost: a.org\r\n')).kind, 'incomplete');
  assert.equal(parseHttpHost(Buffer.from('SSH-2.0-OpenSSH\r\n\r\n')).kind, 'invalid');
  assert.equal(parseHttpHost(Buffer.alloc(16 * 1024, 0x41)).kind, 'invalid', 'a head that never ends');
});

test('wildcards match strict subdomains only; exact names match exactly', () => {
  const list = ['pypi.org', '*.github.com'];
  assert.ok(domainAllowed('pypi.org', list));
  assert.ok(domainAllowed('api.github.com', list));
  assert.ok(domainAllowed('a.b.github.com', list));
  assert.ok(!domainAllowed('github.com', list));
  assert.ok(!domainAllowed('evilgithub.com', list));
  assert.ok(!domainAllowed('pypi.org.evil.net', list));
  assert.ok(!domainAllowed('files.pypi.org', list));
});

test('/proc/net/tcp addresses are written and read the way the kernel writes them', () => {
  assert.equal(procNetAddress('127.0.0.1', 80), '0100007F:0050');
  assert.deepEqual(fromProcNetAddress('0771CBCB:01BB'), { address: '203.203.113.7', port: 443 });
  assert.equal(fromProcNetAddress('zz'), null);
});

test('the proxy connects only to public addresses (or operator-allowed ones), never the host’s own', () => {
  const proxy = new EgressProxy({
    blockedV4: BLOCKED_V4,
    blockedV6: BLOCKED_V6,
    operatorAllow: ['192.168.10.0/24'],
  });
  assert.ok(proxy.acceptable('203.0.113.7'), 'public (TEST-NET-3 stands in)');
  assert.ok(proxy.acceptable('2001:db8::1'));
  for (const blocked of [
    '10.1.2.3',
    '127.0.0.1',
    '169.254.169.254',
    '100.64.0.1',
    '192.168.1.1',
    '::1',
    'fe80::1',
    '::ffff:10.0.0.1',
  ]) {
    assert.equal(proxy.acceptable(blocked), false, blocked);
  }
  assert.ok(proxy.acceptable('192.168.10.5'), 'a range the operator allowed');
});
