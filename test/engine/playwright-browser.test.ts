// Real VMs from the playwright-browser image: a parent whose Chromium was
// launched and whose page was opened before the freeze, and children whose
// eval drives their own copy of that page at once, each drawing its own
// Math.random; the host's own Playwright driving a child's Chromium over CDP
// through the daemon; and the page kept to the sandbox's egress policy.
// (TLS client randoms across 10 children: npm run bench -- browser.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { startDaemon } from '../../src/daemon/server.js';
import { Sandbox } from '../../src/sdk/index.js';
import { parseEgress } from '../../src/engine/index.js';
import { TEST_DATA_DIR, warmChildren } from '../support/engine.js';

const TAG = 'test-playwright-browser';
const warm = warmChildren(TAG, 'playwright-browser', 3);

const child = (i: number) => warm.sandbox(i).agent;

/** The client random of the ClientHello the page's navigation sends (bytes 11..43 of the first record). */
const CLIENT_RANDOM_CODE = `
  const net = require('net');
  let random = null;
  const server = net.createServer((s) => s.once('data', (d) => { random = d.subarray(11, 43).toString('hex'); s.destroy(); }));
  await new Promise((resolve) => server.listen(8443, '127.0.0.1', resolve));
  await page.goto('https://127.0.0.1:8443/', { timeout: 60000 }).catch(() => {});
  server.close();
  return random;`;

test('every child answers page.title() from the page its parent warmed', async () => {
  const { manifest } = await warm.engine.store.getReady(TAG);
  assert.deepEqual(manifest.runtime, { kind: 'browser', imports: [] });
  const titles = await Promise.all(
    warm.children.map((c) => c.sandbox.agent.eval('return await page.title()')),
  );
  for (const r of titles) assert.deepEqual(r, { result: 'forkd', repr: "'forkd'", error: null, exitCode: 0 });
  const r = await child(0).eval(
    'return { pages: context.pages().length, version: browser.version(), url: page.url() }',
  );
  assert.equal((r.result as { pages: number }).pages, 1);
  assert.match((r.result as { version: string }).version, /^\d+\./);
});

test('a child’s page is its own: what one child does is not seen by another', async () => {
  await child(0).eval("await page.evaluate(() => { document.title = 'changed'; window.mark = 42 })");
  assert.equal(
    (await child(0).eval('return await page.evaluate(() => [document.title, window.mark])')).repr,
    "[ 'changed', 42 ]",
  );
  assert.deepEqual(
    (await child(1).eval('return await page.evaluate(() => [document.title, window.mark ?? null])')).result,
    ['forkd', null],
  );
});

test('eval is an async function body: no return is no value, errors and syntax errors come back, the runtime goes on', async () => {
  const c = child(2);
  assert.deepEqual(await c.eval('const x = 1'), { result: null, repr: null, error: null, exitCode: 0 });
  const content = await c.eval(
    "await page.setContent('<p id=a>hi</p>'); return await page.textContent('#a')",
  );
  assert.equal(content.result, 'hi');
  const thrown = await c.eval("throw new TypeError('bad input')");
  assert.equal(thrown.exitCode, 1);
  assert.match(thrown.error ?? '', /TypeError: bad input/);
  assert.doesNotMatch(thrown.error ?? '', /node_runtime|browser\.js/);
  const inPage = await c.eval("return await page.evaluate(() => { throw new Error('from the page') })");
  assert.equal(inPage.exitCode, 1);
  assert.match(inPage.error ?? '', /from the page/);
  const syntax = await c.eval('return (');
  assert.equal(syntax.exitCode, 1);
  assert.match(syntax.error ?? '', /SyntaxError/);
  const logged = await c.eval("console.log('seen'); return 2 + 2");
  assert.equal(logged.stdout, 'seen\n');
  assert.equal(logged.result, 4);
});

test('Math.random and crypto.getRandomValues differ between children in the page, in later documents and in node', async () => {
  const draws = await Promise.all(
    warm.children.map((c) =>
      c.sandbox.agent.eval(
        'return [await page.evaluate(() => Math.random()), Math.random(), await page.evaluate(() => Array.from(crypto.getRandomValues(new Uint32Array(2))).join(":"))]',
      ),
    ),
  );
  for (const d of draws) assert.equal(d.exitCode, 0, d.error ?? '');
  const column = (i: number) => new Set(draws.map((d) => JSON.stringify((d.result as unknown[])[i])));
  assert.equal(column(0).size, warm.children.length, 'page Math.random');
  assert.equal(column(1).size, warm.children.length, 'node Math.random');
  assert.equal(column(2).size, warm.children.length, 'page crypto.getRandomValues');

  // A new document gets the child's Math.random too, from the init script
  // the child registered (with its own seed): V8's would be the parent's.
  const reloaded = await child(1).eval(
    "await page.goto('about:blank', { timeout: 120000 }); return await page.evaluate(() => [String(Math.random).includes('[native code]') || String(crypto.getRandomValues).includes('[native code]'), Math.random()])",
  );
  assert.equal(reloaded.exitCode, 0, reloaded.error ?? '');
  assert.equal(
    (reloaded.result as [boolean, number])[0],
    false,
    'the new document’s Math.random and getRandomValues are the child’s',
  );
});

test('the host’s own Playwright drives a child’s warm Chromium over CDP through the daemon, with its token', async () => {
  const scratch = await mkdtemp(join(tmpdir(), 'forkd-cdp-'));
  const token = 'cdp-test-token-0123456789abc';
  await writeFile(join(scratch, 'token'), token, { mode: 0o600 });
  const daemon = await startDaemon({
    dataDir: TEST_DATA_DIR,
    port: 0,
    tokenFile: join(scratch, 'token'),
    auditLog: join(scratch, 'audit.jsonl'),
  });
  let sandbox: Sandbox | undefined;
  try {
    sandbox = await Sandbox.create({ url: daemon.url, token, snapshotTag: TAG });
    const options = await sandbox.browser.connectOptions();
    assert.match(
      options.endpointURL,
      new RegExp(
        `^ws://127\\.0\\.0\\.1:\\d+/v1/sandboxes/${sandbox.id}/ports/9222/devtools/browser/[0-9a-f-]+$`,
      ),
    );
    assert.deepEqual(options.headers, { authorization: `Bearer ${token}` });
    await assert.rejects(chromium.connectOverCDP(options.endpointURL, { timeout: 60_000 }), /401/);

    const browser = await chromium.connectOverCDP({ ...options, timeout: 120_000 });
    try {
      // The warm page the parent opened is there: this is the child's own browser.
      const session = await browser.newBrowserCDPSession();
      const { targetInfos } = (await session.send('Target.getTargets')) as {
        targetInfos: Array<{ type: string; title: string }>;
      };
      assert.ok(
        targetInfos.some((t) => t.type === 'page' && t.title === 'forkd'),
        JSON.stringify(targetInfos),
      );
      const context = browser.contexts()[0] ?? (await browser.newContext());
      const page = await context.newPage();
      await page.setContent('<title>mine</title><p id=p>driven from the host</p>');
      assert.equal(await page.title(), 'mine');
      assert.equal(await page.textContent('#p'), 'driven from the host');
    } finally {
      await browser.close();
    }
    // The runtime's page is untouched by what the CDP client did.
    assert.equal(await sandbox.eval('return await page.title()'), 'forkd');
  } finally {
    await sandbox?.kill();
    await daemon.close();
    await rm(scratch, { recursive: true, force: true });
  }
});

test('the page keeps to the sandbox’s egress policy: the host’s loopback servers are out of reach', async () => {
  let hits = 0;
  const server = createServer((_req, res) => {
    hits++;
    res.end('<title>host</title>');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  try {
    // 10.0.2.2 is slirp's alias for the host's loopback when egress is not restricted.
    const r = await child(0).eval(
      `const out = [];
       for (const url of ['http://10.0.2.2:${port}/', 'http://127.0.0.1:${port}/']) {
         out.push(await page.goto(url, { timeout: 30000 }).then(() => 'loaded', (e) => e.message.split('\\n')[0]));
       }
       return out`,
    );
    assert.equal(r.exitCode, 0, r.error ?? '');
    for (const outcome of r.result as string[]) assert.match(outcome, /net::ERR_|Timeout/);
    assert.equal(hits, 0, 'the host server was reached from the sandbox');
  } finally {
    server.close();
  }
});

test('a child with a network gets its own Chromium network service: the ClientHello randoms of its TLS differ', async () => {
  // Egress internet: nothing here leaves the guest (the server is on its loopback).
  const result = await warm.engine.fork({ tag: TAG, n: 2, egress: parseEgress('internet') });
  const networked = result.children.flatMap((c) => (c.ok ? [c.sandbox] : []));
  try {
    assert.equal(networked.length, 2);
    const hellos = await Promise.all(networked.map((s) => s.agent.eval(CLIENT_RANDOM_CODE)));
    for (const h of hellos) assert.match(String(h.result), /^[0-9a-f]{64}$/, h.error ?? '');
    assert.notEqual(hellos[0]!.result, hellos[1]!.result, 'Chromium TLS client random repeated');
    // The page and its context carried on over the restart.
    assert.equal((await networked[0]!.agent.eval('return await page.title()')).exitCode, 0);
  } finally {
    await Promise.all(networked.map((s) => s.kill()));
  }
});
