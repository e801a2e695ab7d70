// The daemon's /ui page in a real headless Chromium (Debian's, from the
// playwright-browser recipe's root filesystem, run on the host under
// bubblewrap): the tree with a sandbox under its snapshot, a new sandbox and
// a depth-3 chain of forks appearing without a reload, the token taken from the fragment (and a page
// without one saying what is missing), and the page's security headers.
// FORKD_UI_SCREENSHOT=path keeps the screenshot (the README's).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { startDaemon, type RunningDaemon } from '../../src/daemon/server.js';
import type { Engine } from '../../src/engine/index.js';
import { getRecipe } from '../../src/image/index.js';
import { ensureRootfsTree } from '../../src/image/rootfs.js';
import { qemuProcessesUsing, testEngine, TEST_DATA_DIR } from '../support/engine.js';

const TAG = 'test-ui-tiny';
const TOKEN = 'ui-test-token-0123456789abcdef';
let engine: Engine;
let daemon: RunningDaemon;
let browser: Browser;
let scratch: string;
const sandboxes: string[] = [];
const FORK_TAGS = ['test-ui-step-1', 'test-ui-step-2', 'test-ui-step-3'];

async function forkKept(id: string, tag: string): Promise<string> {
  const res = await fetch(`${daemon.url}/v1/sandboxes/${id}/fork`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ k: 1, tag, keep_snapshot: true }),
  });
  assert.equal(res.status, 201, await res.clone().text());
  const child = ((await res.json()) as { children: Array<{ id: string }> }).children[0]!.id;
  sandboxes.push(child);
  return child;
}

async function spawn(): Promise<string> {
  const res = await fetch(`${daemon.url}/v1/sandboxes`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ snapshot_tag: TAG }),
  });
  assert.equal(res.status, 201);
  const id = ((await res.json()) as Array<{ id: string }>)[0]!.id;
  sandboxes.push(id);
  return id;
}

before(async () => {
  engine = testEngine();
  await engine.createSnapshot({ tag: TAG, recipe: 'tiny', replace: true, memoryMib: 256 });
  scratch = await mkdtemp(join(tmpdir(), 'forkd-ui-'));
  await writeFile(join(scratch, 'token'), TOKEN, { mode: 0o600 });
  daemon = await startDaemon({
    dataDir: TEST_DATA_DIR,
    port: 0,
    tokenFile: join(scratch, 'token'),
    auditLog: join(scratch, 'audit.jsonl'),
  });
  // Debian's Chromium as the recipe installs it, run from the recipe's tree
  // on the host network (the daemon is on loopback), with the host's /tmp
  // for the profile Playwright makes.
  const recipe = getRecipe('playwright-browser');
  const tree = await ensureRootfsTree({
    dataDir: TEST_DATA_DIR,
    suite: recipe.suite,
    packages: recipe.packages,
  });
  const wrapper = join(scratch, 'chromium');
  await writeFile(
    wrapper,
    `#!/bin/sh\nexec bwrap --ro-bind '${tree}' / --dev /dev --proc /proc --bind /tmp /tmp --tmpfs /dev/shm ` +
      `--setenv HOME /tmp --unshare-pid --unshare-ipc --die-with-parent /usr/lib/chromium/chromium-headless-shell "$@"\n`,
  );
  await chmod(wrapper, 0o755);
  browser = await chromium.launch({ executablePath: wrapper, args: ['--no-sandbox'], timeout: 120_000 });
});

after(async () => {
  try {
    await browser?.close();
    for (const id of sandboxes) {
      await fetch(`${daemon.url}/v1/sandboxes/${id}`, {
        method: 'DELETE',
        headers: { authorization: `Bearer ${TOKEN}` },
      });
    }
    await daemon?.close();
    assert.deepEqual(qemuProcessesUsing(engine.dataDir.runDir), []);
  } finally {
    for (const tag of [...FORK_TAGS].reverse()) await engine?.store.remove(tag).catch(() => undefined);
    await engine?.store.remove(TAG);
    await rm(scratch, { recursive: true, force: true });
  }
});

test('/ui draws the tree with each sandbox under its snapshot and picks up new sandboxes without a reload', async () => {
  const first = await spawn();
  const page = await browser.newPage({ viewport: { width: 900, height: 520 } });
  try {
    await page.goto(`${daemon.url}/ui#token=${TOKEN}`);
    const under = (id: string) => `li.snapshot[data-tag="${TAG}"] li.sandbox[data-sandbox="${id}"]`;
    await page.waitForSelector(under(first), { timeout: 30_000 });
    const second = await spawn();
    await page.waitForSelector(under(second), { timeout: 30_000 });
    // A depth-3 chain of forks, each drawn under its parent as it appears.
    let from = first;
    for (const tag of FORK_TAGS) from = await forkKept(from, tag);
    const nested = FORK_TAGS.map((t) => `li.snapshot[data-tag="${t}"]`).join(' ');
    await page.waitForSelector(
      `li.snapshot[data-tag="${TAG}"] ${nested} li.sandbox[data-sandbox="${from}"]`,
      { timeout: 30_000 },
    );
    assert.match((await page.textContent('#status')) ?? '', /snapshots, \d+ sandboxes running/);
    const shot = await page.screenshot({ fullPage: true });
    assert.deepEqual([...shot.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47], 'a PNG');
    if (process.env.FORKD_UI_SCREENSHOT) await writeFile(process.env.FORKD_UI_SCREENSHOT, shot);
  } finally {
    await page.close();
  }
});

test('/ui without a token in its fragment shows the 401 and how to give it; the page is locked down', async () => {
  const page = await browser.newPage();
  try {
    await page.goto(`${daemon.url}/ui`);
    await page.waitForFunction("document.getElementById('status')?.className === 'error'");
    assert.match(
      (await page.textContent('#status')) ?? '',
      /401: missing bearer token \(open \/ui#token=<your token>\)/,
    );
    assert.equal(await page.$$eval('li', (l) => l.length), 0);
  } finally {
    await page.close();
  }
  const res = await fetch(`${daemon.url}/ui`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-security-policy') ?? '', /default-src 'none'; script-src 'sha256-/);
  assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
  // The data stays behind the token.
  assert.equal((await fetch(`${daemon.url}/v1/tree`)).status, 401);
});
