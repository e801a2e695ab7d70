// Real VMs from the playwright-browser image: a parent whose Chromium was
// launched and whose page was opened before the freeze, and children whose
// eval drives their own copy of that page at once, each drawing its own
// random numbers in the page and in its TLS handshakes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { warmChildren } from '../support/engine.js';

const TAG = 'test-playwright-browser';
const warm = warmChildren(TAG, 'playwright-browser', 3);

function child(i: number) {
  const c = warm.children[i];
  assert.ok(c, `child ${i}`);
  return c.sandbox.agent;
}

/** A throwaway key and self-signed certificate for a TLS server inside the guest. */
function selfSignedCert(): { key: string; cert: string } {
  const dir = mkdtempSync(join(tmpdir(), 'forkd-tls-'));
  try {
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-keyout',
        join(dir, 'key.pem'),
        '-out',
        join(dir, 'cert.pem'),
        '-days',
        '1',
        '-subj',
        '/CN=localhost',
      ],
      { stdio: 'ignore' },
    );
    return {
      key: readFileSync(join(dir, 'key.pem'), 'utf8'),
      cert: readFileSync(join(dir, 'cert.pem'), 'utf8'),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

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

test('Math.random differs between children in the page and in node; getRandomValues and TLS client randoms are measured', async (t) => {
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
  t.diagnostic(`page crypto.getRandomValues: ${column(2).size}/${warm.children.length} distinct`);

  // A new document gets a Math.random of its own too (the child's init script).
  const reloaded = await Promise.all(
    warm.children.map((c) =>
      c.sandbox.agent.eval("await page.goto('about:blank'); return await page.evaluate(() => Math.random())"),
    ),
  );
  for (const r of reloaded) assert.equal(r.exitCode, 0, r.error ?? '');
  assert.equal(
    new Set(reloaded.map((r) => r.result)).size,
    warm.children.length,
    'Math.random after a navigation',
  );

  // TLS client randoms, read by a server in the guest from its key log: one
  // handshake from Chromium (BoringSSL), one from node (OpenSSL).
  const { key, cert } = selfSignedCert();
  const code = `
    const tls = require('tls');
    const randoms = [];
    const server = tls.createServer({ key: ${JSON.stringify(key)}, cert: ${JSON.stringify(cert)} });
    server.on('keylog', (line) => { const r = line.toString().split(' ')[1]; if (!randoms.includes(r)) randoms.push(r); });
    await new Promise((resolve) => server.listen(8443, '127.0.0.1', resolve));
    await page.goto('https://127.0.0.1:8443/', { timeout: 20000 }).catch(() => {});
    const chromium = randoms[0] ?? null;
    await new Promise((resolve) => { const s = tls.connect({ port: 8443, host: '127.0.0.1', rejectUnauthorized: false }, () => { s.end(); resolve(); }); s.on('error', resolve); });
    server.close();
    return { chromium, node: randoms.find((r) => r !== chromium) ?? null };`;
  const tlsRandoms = await Promise.all(warm.children.map((c) => c.sandbox.agent.eval(code)));
  for (const r of tlsRandoms) assert.equal(r.exitCode, 0, r.error ?? '');
  const got = tlsRandoms.map((r) => r.result as { chromium: string | null; node: string | null });
  assert.ok(
    got.every((g) => g.chromium && g.node),
    JSON.stringify(tlsRandoms),
  );
  assert.equal(new Set(got.map((g) => g.chromium)).size, warm.children.length, 'Chromium TLS client randoms');
  t.diagnostic(
    `node TLS client randoms: ${new Set(got.map((g) => g.node)).size}/${warm.children.length} distinct`,
  );
});
