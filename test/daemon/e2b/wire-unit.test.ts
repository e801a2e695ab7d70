// The E2B layer's pure pieces: host-name routing (api.<domain>,
// <port>-<id>.<domain>, anything else untouched), the Connect envelope,
// the environment `forkd e2b env` prints, and the output spool a hostile
// guest writes (garbage, lines past the cap, a line split across reads).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { routeByE2bHost } from '../../../src/daemon/e2b/host-routing.js';
import { RpcError, unwrapEnvelope } from '../../../src/daemon/e2b/connect.js';
import { OutputSpool } from '../../../src/daemon/e2b/output-spool.js';
import { checkE2bDomain } from '../../../src/daemon/e2b/local-ca.js';
import { e2bEnvironment } from '../../../src/cli/commands/e2b.js';

function request(host: string, url: string): IncomingMessage {
  return { url, headers: { host } } as unknown as IncomingMessage;
}

test('host routing: the API host, sandbox hosts with their port and id, other hosts untouched', () => {
  const route = routeByE2bHost('e2b.localhost', '/e2b');
  assert.equal(
    route(request('api.e2b.localhost:8443', '/v2/sandboxes?limit=1')),
    '/e2b/v2/sandboxes?limit=1',
  );
  const sandbox = request('49983-iabc123.e2b.localhost:8443', '/files?path=x');
  assert.equal(route(sandbox), '/e2b-sandbox/files?path=x');
  assert.equal(sandbox.headers['e2b-sandbox-port'], '49983');
  assert.equal(sandbox.headers['e2b-sandbox-id'], 'iabc123');
  for (const host of [
    '127.0.0.1:8889',
    'api.other.test',
    '49983-iabc.other.test',
    'x-iabc.e2b.localhost',
    'e2b.localhost',
  ]) {
    const req = request(host, '/v1/sandboxes');
    assert.equal(route(req), '/v1/sandboxes', host);
    assert.equal(req.headers['e2b-sandbox-id'], undefined, host);
  }
});

test('Connect envelopes: one JSON message; compressed, truncated or non-JSON ones refused', () => {
  const msg = Buffer.from(JSON.stringify({ process: { pid: 7 } }));
  const head = Buffer.alloc(5);
  head.writeUInt32BE(msg.length, 1);
  assert.deepEqual(unwrapEnvelope(Buffer.concat([head, msg])), { process: { pid: 7 } });
  const compressed = Buffer.from(head);
  compressed.writeUInt8(1, 0);
  const codeOf = (body: Buffer) => {
    try {
      unwrapEnvelope(body);
      return null;
    } catch (err) {
      return err instanceof RpcError ? err.code : 'other';
    }
  };
  assert.equal(codeOf(Buffer.concat([compressed, msg])), 'unimplemented');
  assert.equal(codeOf(Buffer.concat([head, msg.subarray(0, 3)])), 'invalid_argument');
  assert.equal(codeOf(Buffer.from([0, 0])), 'invalid_argument');
  const junk = Buffer.from('not json');
  const junkHead = Buffer.alloc(5);
  junkHead.writeUInt32BE(junk.length, 1);
  assert.equal(codeOf(Buffer.concat([junkHead, junk])), 'invalid_argument');
});

test('forkd e2b env: URLs by default, the domain with the port, the CA only with TLS', () => {
  assert.deepEqual(
    e2bEnvironment({
      url: 'http://127.0.0.1:8889',
      token: undefined,
      domain: 'localhost',
      caFile: null,
      domainOnly: false,
    }),
    {
      E2B_API_URL: 'http://127.0.0.1:8889/e2b',
      E2B_SANDBOX_URL: 'http://127.0.0.1:8889/e2b-sandbox',
      E2B_API_KEY: 'forkd-no-token',
      E2B_DOMAIN: 'localhost:8889',
    },
  );
  assert.deepEqual(
    e2bEnvironment({
      url: 'https://127.0.0.1:443',
      token: 't',
      domain: 'e2b.localhost',
      caFile: '/ca.pem',
      domainOnly: true,
    }),
    { E2B_API_KEY: 't', E2B_DOMAIN: 'e2b.localhost', NODE_EXTRA_CA_CERTS: '/ca.pem' },
  );
  assert.throws(() => checkE2bDomain('localhost'), /two or more labels/);
  assert.throws(() => checkE2bDomain('bad_name.test'), /not a DNS name/);
  assert.equal(checkE2bDomain('e2b.localhost'), 'e2b.localhost');
});

test('the output spool: lines as written, split reads joined, garbage and oversized lines dropped', () => {
  const spool = new OutputSpool({ readFileSlice: () => Promise.reject(new Error('unused')) });
  const line = (s: string, t: string) => `${JSON.stringify({ s, t })}\n`;
  const bytes = Buffer.from(
    line('o', 'one\n') + line('e', 'warn\n') + 'garbage\n{"s":"x","t":"?"}\n' + line('o', 'tw'),
  );
  const cut = bytes.length - 5;
  assert.deepEqual(spool.take(bytes.subarray(0, cut)), [
    { stream: 'stdout', text: 'one\n' },
    { stream: 'stderr', text: 'warn\n' },
  ]);
  assert.deepEqual(spool.take(bytes.subarray(cut)), [{ stream: 'stdout', text: 'tw' }]);
  // A guest that writes one endless line does not grow the host's buffer past the cap.
  assert.deepEqual(spool.take(Buffer.alloc(2 * 1024 * 1024, 0x61)), []);
  assert.deepEqual(spool.take(Buffer.from('\n' + line('o', 'after'))), [{ stream: 'stdout', text: 'after' }]);
  assert.deepEqual(spool.sent, {
    stdout: 'one\n'.length + 'tw'.length + 'after'.length,
    stderr: 'warn\n'.length,
  });
  assert.deepEqual(spool.rest({ stdout: 'one\ntwafter and more', stderr: 'warn\n' }), {
    stdout: ' and more',
    stderr: '',
  });
});
