// The one slow image test: builds python-numpy (mmdebstrap minbase +
// python3-numpy, ~40 s+) into the shared test data dir, checks the ext4 image holds
// python3, numpy, the agent and runtime.json, checks a rebuild with a changed
// agent reuses the cached bootstrapped tree, and boots it to the agent.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { appendFileSync, copyFileSync, existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { buildImage, removeImage, type GuestImage } from '../../src/image/index.js';
import { TEST_DATA_DIR } from '../support/engine.js';
import { bootUntil, guestAgent } from './boot-helper.js';

const { guestDir, agentPath } = guestAgent();
// The shared test data dir: the engine tests restore from this same image.
const dataDir = TEST_DATA_DIR;
let image: GuestImage;
let coldMs = 0;

before(async () => {
  assert.ok(agentPath, 'guest agent not built: run make -C guest');
  assert.ok(
    existsSync(join(guestDir, 'runtime', 'python_runtime.py')),
    'guest/runtime/python_runtime.py missing',
  );
  assert.equal(process.getuid?.(), 0, 'mmdebstrap needs root');
  mkdirSync(dataDir, { recursive: true });
  const t = Date.now();
  image = await buildImage('python-numpy', { dataDir, guestDir });
  coldMs = Date.now() - t;
});

function debugfs(request: string): string {
  const r = spawnSync('debugfs', ['-R', request, image.rootfsPath!], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

void test('python-numpy rootfs holds python3, numpy, the agent, the runtime and init', (t) => {
  t.diagnostic(`cold build (kernel + mmdebstrap + mkfs): ${coldMs} ms`);
  assert.ok(image.rootfsPath);
  assert.deepEqual(image.runtime?.imports, ['numpy']);
  assert.match(image.kernelCmdline, /root=\/dev\/vda/);
  for (const path of [
    '/usr/bin/python3',
    '/usr/lib/python3/dist-packages/numpy/__init__.py',
    '/usr/bin/forkd-agent',
    '/usr/lib/forkd/python_runtime.py',
    '/usr/lib/forkd/busybox',
    '/usr/sbin/forkd-init',
  ]) {
    assert.match(debugfs(`stat ${path}`), /Inode: \d+/, path);
  }
  const runtime = JSON.parse(debugfs('cat /etc/forkd/runtime.json')) as {
    kind: string;
    argv: string[];
    imports: string[];
  };
  assert.deepEqual(runtime, {
    kind: 'python',
    argv: ['python3', '/usr/lib/forkd/python_runtime.py'],
    imports: ['numpy'],
  });
  // No partial build directories are left behind.
  assert.deepEqual(
    readdirSync(join(dataDir, 'images')).filter((n) => n.startsWith('.tmp-')),
    [],
  );
});

void test('a changed agent rebuilds without re-running the bootstrap', async (t) => {
  const alt = join(dataDir, 'forkd-agent-alt');
  copyFileSync(agentPath!, alt);
  appendFileSync(alt, Buffer.from('\0changed'));
  const start = Date.now();
  const other = await buildImage('python-numpy', { dataDir, guestDir, agentPath: alt });
  const ms = Date.now() - start;
  t.diagnostic(`rebuild with a new agent (cached bootstrapped tree): ${ms} ms`);
  assert.notEqual(other.contentHash, image.contentHash);
  await removeImage(other.dir, { dataDir });
  rmSync(alt);
  assert.ok(ms < 30000, `rebuild took ${ms} ms`);
  const cached = Date.now();
  await buildImage('python-numpy', { dataDir, guestDir });
  t.diagnostic(`cached build: ${Date.now() - cached} ms`);
});

void test('python-numpy boots from its ext4 root to the agent', async (t) => {
  let result;
  try {
    result = await bootUntil(image, { sockDir: dataDir, timeoutMs: 60000 });
  } catch (err) {
    t.diagnostic(`first boot failed, retrying: ${String(err).split('\n')[0]}`);
    result = await bootUntil(image, { sockDir: dataDir, timeoutMs: 60000 });
  }
  t.diagnostic(`boot to the agent: ${result.wallMs} ms wall, guest uptime ${result.guestUptimeS} s`);
  assert.doesNotMatch(result.console, /FATAL|insmod .* failed|cannot mount/);
});
