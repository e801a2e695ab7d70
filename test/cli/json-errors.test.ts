// `--json` failures without a VM: one `{error, code, status}` document on
// stdout with the API's codes (the engine's for local commands, the daemon's
// for remote ones), the usual one line on stderr, and a non-zero exit.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDaemon, type RunningDaemon } from '../../src/daemon/server.js';
import { runCli, runCliAsync, type CliResult } from '../support/cli.js';

let scratch: string;
let dataDir: string;

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'forkd-cli-json-'));
  dataDir = join(scratch, 'data');
});

after(async () => {
  await rm(scratch, { recursive: true, force: true });
});

/** The one JSON document a failed `--json` run printed on stdout. */
function failure(r: CliResult, exitStatus: number): { error: string; code: string; status: number } {
  assert.equal(r.status, exitStatus, r.stderr);
  const doc = JSON.parse(r.stdout) as { error: string; code: string; status: number };
  assert.deepEqual(Object.keys(doc).sort(), ['code', 'error', 'status']);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  return doc;
}

test('an engine error: the engine’s code, the status the daemon would answer', () => {
  const missing = failure(runCli(['--json', 'rmi', 'no-such-tag', '--data-dir', dataDir]), 1);
  assert.equal(missing.code, 'not_found');
  assert.equal(missing.status, 404);
  assert.match(missing.error, /^snapshot "no-such-tag" not found/);

  const badTag = failure(runCli(['--data-dir', dataDir, 'fork', '--tag', '../x', '--json']), 2);
  assert.deepEqual([badTag.code, badTag.status], ['invalid_argument', 400]);
  assert.match(badTag.error, /invalid tag/);
});

test('a usage error is invalid_argument too; without --json stdout stays empty', () => {
  const usage = failure(runCli(['--json', '--data-dir', dataDir, 'fork']), 2);
  assert.equal(usage.code, 'invalid_argument');
  assert.match(usage.error, /required option '-t, --tag <tag>' not specified/);
  const plain = runCli(['--data-dir', dataDir, 'rmi', 'no-such-tag']);
  assert.equal(plain.status, 1);
  assert.equal(plain.stdout, '');
  assert.match(plain.stderr, /^forkd: error: snapshot "no-such-tag" not found/);
});

test('remote commands: the daemon’s own code, or `remote` when no daemon answers', async () => {
  const daemon: RunningDaemon = await startDaemon({
    dataDir: join(scratch, 'daemon'),
    port: 0,
    auditLog: join(scratch, 'audit.jsonl'),
  });
  try {
    // The daemon runs in this process: the CLI must not block it.
    const r = await runCliAsync([
      'exec',
      '--url',
      daemon.url,
      '--sandbox',
      'sb-nope',
      '--json',
      '--',
      'true',
    ]);
    const missing = failure(r, 1);
    assert.deepEqual([missing.code, missing.status], ['not_found', 404]);
    assert.match(missing.error, /sb-nope/);
    // The tag is checked by the daemon, not the CLI: a daemon's 400 exits 2 as a local one does.
    const bad = failure(await runCliAsync(['spawn', '--url', daemon.url, '--tag', '../x', '--json']), 2);
    assert.deepEqual([bad.code, bad.status], ['invalid_argument', 400]);
  } finally {
    await daemon.close();
  }

  const closed = await closedPort();
  const down = failure(runCli(['ls', '--url', `http://127.0.0.1:${closed}`, '--json']), 1);
  assert.deepEqual([down.code, down.status], ['remote', 502]);
  assert.match(down.error, new RegExp(`cannot reach the forkd daemon at http://127\\.0\\.0\\.1:${closed}`));
});

/** A port nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}
