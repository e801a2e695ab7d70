// The MCP server as an agent host meets it: the official SDK's client over
// stdio, `forkd mcp` in front of a real daemon.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { startDaemon, type RunningDaemon } from '../../src/daemon/server.js';
import { testEngine, TEST_DATA_DIR } from '../support/engine.js';
import type { Engine } from '../../src/engine/index.js';

const TAG = 'test-mcp-tiny';
let engine: Engine;
let daemon: RunningDaemon;
let client: Client;
let scratch: string;

type ToolResult = {
  isError?: boolean;
  content: { type: string; text: string }[];
  structuredContent?: Record<string, unknown>;
};

async function callTool(
  name: string,
  args: Record<string, unknown> = {},
): Promise<{ isError: boolean; text: string; structured: Record<string, unknown> | undefined }> {
  const r = (await client.callTool({ name, arguments: args })) as ToolResult;
  return {
    isError: r.isError ?? false,
    text: r.content.map((c) => c.text).join(''),
    structured: r.structuredContent,
  };
}

before(async () => {
  engine = testEngine();
  await engine.createSnapshot({ tag: TAG, recipe: 'tiny', replace: true, memoryMib: 256 });
  scratch = await mkdtemp(join(tmpdir(), 'forkd-mcp-'));
  daemon = await startDaemon({ dataDir: TEST_DATA_DIR, port: 0, auditLog: join(scratch, 'audit.jsonl') });
  client = new Client({ name: 'forkd-test', version: '0.0.0' });
  await client.connect(
    new StdioClientTransport({
      command: process.execPath,
      args: ['dist/src/cli/main.js', 'mcp', '--url', daemon.url],
    }),
  );
});

after(async () => {
  await client.close();
  await daemon.close();
  await engine.cleanup({ killRunning: true });
  await engine.store.remove(TAG).catch(() => undefined);
  await rm(scratch, { recursive: true, force: true });
});

test('the server lists every tool with an input schema', async () => {
  const { tools } = await client.listTools();
  const names = tools.map((t) => t.name).sort();
  assert.deepEqual(names, [
    'best_of',
    'branch_sandbox',
    'eval_code',
    'exec_command',
    'fork_sandbox',
    'get_sandbox',
    'kill_sandbox',
    'list_sandboxes',
    'list_snapshots',
    'ping_sandbox',
    'read_file',
    'spawn_sandboxes',
    'write_file',
  ]);
  for (const t of tools) assert.equal(t.inputSchema.type, 'object');
});

test('an agent spawns a sandbox, runs commands, moves files, evals and kills it', async () => {
  assert.match((await callTool('list_snapshots')).text, new RegExp(TAG));
  const spawned = await callTool('spawn_sandboxes', { snapshot_tag: TAG, n: 1 });
  assert.equal(spawned.isError, false, spawned.text);
  const id = (JSON.parse(spawned.text) as { id: string }[])[0]!.id;
  assert.match((await callTool('list_sandboxes')).text, new RegExp(id));
  assert.match((await callTool('get_sandbox', { id })).text, new RegExp(TAG));
  assert.match((await callTool('ping_sandbox', { id })).text, /"pong": true/);
  // argv, never a shell: "$(id)" reaches echo unexpanded.
  const exec = JSON.parse(
    (await callTool('exec_command', { id, args: ['echo', '$(id); rm -rf /'] })).text,
  ) as { stdout: string; exit_code: number };
  assert.deepEqual([exec.stdout, exec.exit_code], ['$(id); rm -rf /\n', 0]);
  assert.equal(
    (await callTool('write_file', { id, path: '/tmp/note.txt', content: 'héllo' })).isError,
    false,
  );
  assert.equal((await callTool('read_file', { id, path: '/tmp/note.txt' })).text, 'héllo');
  const evalTiny = await callTool('eval_code', { id, code: '1+1' });
  assert.equal(evalTiny.isError, true);
  assert.match(evalTiny.text, /no eval runtime/);
  assert.match((await callTool('kill_sandbox', { id })).text, /killed/);
  const gone = await callTool('get_sandbox', { id });
  assert.equal(gone.isError, true);
  assert.match(gone.text, /^not_found \(404\): /);
  assert.deepEqual(gone.structured, {
    error: gone.text.replace(/^not_found \(404\): /, ''),
    code: 'not_found',
    status: 404,
  });
});

test('bad arguments are refused by the schema before reaching the daemon', async () => {
  const r = (await client.callTool({
    name: 'exec_command',
    arguments: { id: '../etc', args: [] },
  })) as ToolResult;
  assert.equal(r.isError, true);
  const spawn = (await client.callTool({
    name: 'spawn_sandboxes',
    arguments: { snapshot_tag: 'x', n: 5000 },
  })) as ToolResult;
  assert.equal(spawn.isError, true);
});

test('an agent forks a running sandbox two ways and each child sees its own variant, then keeps the best of three', async () => {
  const spawned = await callTool('spawn_sandboxes', { snapshot_tag: TAG, n: 1 });
  const id = (JSON.parse(spawned.text) as { id: string }[])[0]!.id;
  await callTool('exec_command', { id, args: ['sh', '-c', 'echo before-fork > /root/state'] });
  const forked = await callTool('fork_sandbox', { id, k: 2, vary: { COLOR: ['red', 'blue'] } });
  assert.equal(forked.isError, false, forked.text);
  const children = (JSON.parse(forked.text) as { children: { id: string; variant: { COLOR: string } }[] })
    .children;
  assert.deepEqual(
    children.map((c) => c.variant.COLOR),
    ['red', 'blue'],
  );
  for (const c of children) {
    const out = JSON.parse(
      (await callTool('exec_command', { id: c.id, args: ['sh', '-c', 'echo "$COLOR $(cat /root/state)"'] }))
        .text,
    ) as { stdout: string };
    assert.equal(out.stdout, `${c.variant.COLOR} before-fork\n`);
    await callTool('kill_sandbox', { id: c.id });
  }
  const best = await callTool('best_of', {
    id,
    k: 3,
    vary: { N: ['3', '9', '5'] },
    score_command: ['sh', '-c', 'echo "$N"'],
  });
  assert.equal(best.isError, false, best.text);
  const ranked = (JSON.parse(best.text) as { children: { id: string; score: number; kept: boolean }[] })
    .children;
  assert.deepEqual(
    ranked.map((c) => [c.score, c.kept]),
    [
      [9, true],
      [5, false],
      [3, false],
    ],
  );
  await callTool('kill_sandbox', { id: ranked[0]!.id });
  const neither = await callTool('best_of', { id, k: 2 });
  assert.equal(neither.isError, true);
  assert.match(neither.text, /^invalid_argument: give exactly one of score_command and score_code/);
  const bad = await callTool('fork_sandbox', { id, k: 2, vary: { COLOR: ['red'] } });
  assert.equal(bad.isError, true);
  assert.match(bad.text, /^invalid_argument \(400\): vary\.COLOR has 1 values for k = 2 children/);
  await callTool('kill_sandbox', { id });
});
