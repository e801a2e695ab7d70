// A failed MCP tool call carries the API's error model, without a VM: the
// MCP server in-process (in-memory transport) in front of a real daemon with
// an empty data dir. Text `code (status): message`, and the same as
// structured content.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { startDaemon, type RunningDaemon } from '../../src/daemon/server.js';
import { createMcpServer } from '../../src/mcp/server.js';
import { Controller } from '../../src/sdk/index.js';

let scratch: string;
let daemon: RunningDaemon;
let client: Client;

type ToolResult = {
  isError?: boolean;
  content: { type: string; text: string }[];
  structuredContent?: Record<string, unknown>;
};

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'forkd-mcp-errors-'));
  daemon = await startDaemon({
    dataDir: join(scratch, 'data'),
    port: 0,
    auditLog: join(scratch, 'audit.jsonl'),
  });
  const [serverSide, clientSide] = InMemoryTransport.createLinkedPair();
  await createMcpServer(new Controller({ url: daemon.url, token: '' }), '0.0.0').connect(serverSide);
  client = new Client({ name: 'forkd-test', version: '0.0.0' });
  await client.connect(clientSide);
});

after(async () => {
  await client.close();
  await daemon.close();
  await rm(scratch, { recursive: true, force: true });
});

async function failed(name: string, args: Record<string, unknown>): Promise<ToolResult> {
  const r = (await client.callTool({ name, arguments: args })) as ToolResult;
  assert.equal(r.isError, true, JSON.stringify(r));
  return r;
}

test('an unknown sandbox: not_found (404) as text and as {error, code, status}', async () => {
  for (const [name, args] of [
    ['get_sandbox', { id: 'sb-nope' }],
    ['kill_sandbox', { id: 'sb-nope' }],
    ['exec_command', { id: 'sb-nope', args: ['true'] }],
    ['read_file', { id: 'sb-nope', path: '/etc/hostname' }],
  ] as const) {
    const r = await failed(name, args);
    const text = r.content.map((c) => c.text).join('');
    assert.match(text, /^not_found \(404\): sandbox "?sb-nope"? not found/, name);
    assert.deepEqual(r.structuredContent, {
      error: text.replace(/^not_found \(404\): /, ''),
      code: 'not_found',
      status: 404,
    });
  }
});

test('the daemon’s 400 and 404 for spawn and branch keep their codes', async () => {
  const missing = await failed('spawn_sandboxes', { snapshot_tag: 'no-such' });
  assert.deepEqual([missing.structuredContent?.code, missing.structuredContent?.status], ['not_found', 404]);
  const badEgress = await failed('spawn_sandboxes', { snapshot_tag: 'no-such', egress: 'sideways' });
  assert.deepEqual(
    [badEgress.structuredContent?.code, badEgress.structuredContent?.status],
    ['invalid_argument', 400],
  );
  const branch = await failed('branch_sandbox', { id: 'sb-nope', tag: 'x' });
  assert.deepEqual([branch.structuredContent?.code, branch.structuredContent?.status], ['not_found', 404]);
});
