// Real VMs from the playwright-browser image: a parent whose Chromium was
// launched and whose page was opened before the freeze, and children whose
// eval drives their own copy of that page at once, each drawing its own
// Math.random. (TLS client randoms across 10 children: npm run bench -- browser.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { warmChildren } from '../support/engine.js';

const TAG = 'test-playwright-browser';
const warm = warmChildren(TAG, 'playwright-browser', 3);

const child = (i: number) => warm.sandbox(i).agent;

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

test('Math.random differs between children in the page, in later documents and in node; getRandomValues is measured', async (t) => {
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

  // A new document gets the child's Math.random too, from the init script
  // the child registered (with its own seed): V8's would be the parent's.
  const reloaded = await child(1).eval(
    "await page.goto('about:blank', { timeout: 120000 }); return await page.evaluate(() => [String(Math.random).includes('[native code]'), Math.random()])",
  );
  assert.equal(reloaded.exitCode, 0, reloaded.error ?? '');
  assert.equal(
    (reloaded.result as [boolean, number])[0],
    false,
    'the new document’s Math.random is the child’s',
  );
});
