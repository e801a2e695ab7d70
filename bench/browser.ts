// `npm run bench -- browser`: a cold Chromium start to a page answering (in
// a fresh VM, and natively on the host from the same Debian tree), against
// forks of the playwright-browser snapshot at n = 1, 10, 50, 100 with every
// child answering page.title(); first and warm eval latency; host memory per
// idle browser child. Targets are reported, never asserted.
import { spawnSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Engine, parseEgress, type ChildResult } from '../src/engine/index.js';
import { buildImage, getRecipe } from '../src/image/index.js';
import { ensureNpmModules } from '../src/image/recipe-extras.js';
import { ensureRootfsTree } from '../src/image/rootfs.js';
import { machineSummary, percentile, pssBytes, round, writeResults, type BenchRow } from './support.js';

const TAG = 'playwright-browser';
const TITLE = 'return await page.title()';
/** Evals wait behind every sibling's first eval on two cores: n = 100 needs minutes. */
const SLOW_EVAL = { timeoutMs: 15 * 60_000 };

type Ok = Extract<ChildResult, { ok: true }>;

export async function benchBrowser(engine: Engine, log: (s: string) => void): Promise<void> {
  const rows: BenchRow[] = [];
  const image = await buildImage(TAG, {
    dataDir: engine.dataDir.root,
    onProgress: (e) => log(`${e.step}: ${e.detail ?? ''}`),
  });
  const existing = (await engine.store.exists(TAG)) ? (await engine.store.getReady(TAG)).manifest : null;
  if (existing?.image.contentHash !== image.contentHash) {
    log(`creating snapshot ${TAG} (the first boot of Chromium under TCG takes minutes)`);
    await engine.createSnapshot({ tag: TAG, recipe: TAG, replace: true, onProgress: log });
  }
  const { manifest } = await engine.store.getReady(TAG);
  const coldVmMs = manifest.timings.bootToReadyMs;
  rows.push({
    metric: 'cold start in a fresh VM: boot, node, Chromium, warm page',
    value: coldVmMs,
    unit: 'ms',
  });
  const nativeMs = await nativeColdStart(engine, log);
  if (nativeMs !== null) {
    rows.push({
      metric: 'cold start natively on the host (same Debian tree, no VM)',
      value: nativeMs,
      unit: 'ms',
      note: `${round(coldVmMs / nativeMs, 1)}x faster than in a VM`,
    });
  }

  let largest: Ok[] = [];
  for (const n of [1, 10, 50, 100]) {
    // Only one generation alive at a time: 150 browser VMs do not fit beside each other.
    await Promise.all(largest.map((c) => c.sandbox.kill()));
    largest = [];
    log(`fork n=${n}, each answering page.title()`);
    const started = Date.now();
    const result = await engine.fork({ tag: TAG, n });
    const ok = result.children.filter((c): c is Ok => c.ok);
    const answers = await Promise.all(
      ok.map((c) => c.sandbox.agent.eval(TITLE, SLOW_EVAL).catch(() => null)),
    );
    const wall = Date.now() - started;
    const answered = answers.filter((a) => a?.result === 'forkd').length;
    const perChild = wall / n;
    rows.push({
      metric: `fork n=${n}, all answering page.title()`,
      value: wall,
      unit: 'ms',
      note: `${answered}/${n} answered; ${round(perChild, 0)} ms per browser, ${round(coldVmMs / perChild, 1)}x faster than a cold start in a VM`,
      ...(n === 100 ? { target: '≥ 50x cold', met: answered === n && coldVmMs / perChild >= 50 } : {}),
    });
    if (answered < n) {
      log(`only ${answered}/${n} answered: stopping at this N`);
      await Promise.all(ok.map((c) => c.sandbox.kill()));
      break;
    }
    largest = ok;
  }

  if (largest.length) {
    await new Promise((r) => setTimeout(r, 3000)); // let the children go idle
    const pss = await Promise.all(largest.map((c) => pssBytes(c.sandbox.pid)));
    const perChildMib = pss.reduce((a, b) => a + b, 0) / pss.length / 2 ** 20;
    rows.push({
      metric: `host memory per idle browser child (PSS, ${largest.length} children)`,
      value: round(perChildMib, 1),
      unit: 'MiB',
      target: '≤ 64 MiB',
      met: perChildMib <= 64,
    });
    await Promise.all(largest.map((c) => c.sandbox.kill()));
  }

  // Clone hygiene over 10 children with a network (egress internet: their
  // Chromium gets a new network service; nothing leaves the guests).
  const networked = (await engine.fork({ tag: TAG, n: 10, egress: parseEgress('internet') })).children.filter(
    (c): c is Ok => c.ok,
  );
  await randomness(networked, rows);
  await Promise.all(networked.map((c) => c.sandbox.kill()));

  // Latency in one child with no siblings competing for the cores.
  const single = (await engine.fork({ tag: TAG, n: 1 })).children[0];
  if (!single?.ok) throw new Error('could not fork a child for the latency runs');
  let t = performance.now();
  await single.sandbox.agent.eval(TITLE);
  rows.push({
    metric: 'first eval in a child (reseeds, then page.title())',
    value: round(performance.now() - t),
    unit: 'ms',
  });
  const evals: number[] = [];
  for (let i = 0; i < 50; i++) {
    t = performance.now();
    await single.sandbox.agent.eval(TITLE);
    evals.push(performance.now() - t);
  }
  const p50 = percentile(evals, 50);
  rows.push({
    metric: 'warm eval page.title() p50',
    value: round(p50),
    unit: 'ms',
    target: '≤ 20 ms',
    met: p50 <= 20,
  });
  rows.push({ metric: 'warm eval page.title() p90', value: round(percentile(evals, 90)), unit: 'ms' });
  await single.sandbox.kill();

  const table = await writeResults('browser', machineSummary(manifest.machine.accel), rows, {
    snapshot: TAG,
  });
  log('\n' + table);
}

/** How many distinct values children of one snapshot draw from each generator a browser has. */
async function randomness(children: Ok[], rows: BenchRow[]): Promise<void> {
  const code =
    // randomUUID exists in secure contexts only, which the warm about:blank page is not.
    'return await page.evaluate(() => [Math.random(), Array.from(crypto.getRandomValues(new Uint32Array(4))).join(":")])';
  const draws = await Promise.all(children.map((c) => c.sandbox.agent.eval(code, SLOW_EVAL)));
  const distinct = (i: number) =>
    new Set(draws.map((d) => (Array.isArray(d.result) ? JSON.stringify(d.result[i]) : `error ${d.error}`)))
      .size;
  const names = ['page Math.random', 'page crypto.getRandomValues'];
  // TLS client randoms, read from each ClientHello (bytes 11..43 of the first
  // record) by a plain TCP server in each guest: one from Chromium (BoringSSL,
  // its network process), one from node (OpenSSL).
  const tlsCode = `
    const net = require('net');
    const tls = require('tls');
    const randoms = [];
    const server = net.createServer((s) => s.once('data', (d) => { randoms.push(d.subarray(11, 43).toString('hex')); s.destroy(); }));
    await new Promise((resolve) => server.listen(8443, '127.0.0.1', resolve));
    await page.goto('https://127.0.0.1:8443/', { timeout: 120000 }).catch(() => {});
    const chromium = randoms[0] ?? null;
    await new Promise((resolve) => { const s = tls.connect({ port: 8443, host: '127.0.0.1', rejectUnauthorized: false }); s.on('error', resolve); s.on('close', resolve); });
    server.close();
    return [chromium, randoms[1] ?? null];`;
  const handshakes = await Promise.all(children.map((c) => c.sandbox.agent.eval(tlsCode, SLOW_EVAL)));
  draws.forEach((d, i) => {
    const h = handshakes[i]?.result;
    if (Array.isArray(d.result) && Array.isArray(h)) d.result.push(...(h as unknown[]));
  });
  names.push('TLS client random (Chromium)', 'TLS client random (node)');
  names.forEach((name, i) =>
    rows.push({
      metric: `distinct ${name} values across ${children.length} children`,
      value: distinct(i),
      unit: `of ${children.length}`,
    }),
  );
}

/**
 * The recipe's own Debian tree, run on the host under bubblewrap (its /, a
 * fresh /proc, /dev and /tmp): the same node, playwright-core and Chromium
 * as in the guest, without the VM. Null when bubblewrap is missing.
 */
async function nativeColdStart(engine: Engine, log: (s: string) => void): Promise<number | null> {
  const recipe = getRecipe(TAG);
  const dataDir = engine.dataDir.root;
  const tree = await ensureRootfsTree({ dataDir, suite: recipe.suite, packages: recipe.packages });
  const npm = await ensureNpmModules(dataDir, recipe.npm ?? []);
  const script = join(dataDir, 'cache', 'bench-browser-cold.js');
  await writeFile(
    script,
    `const t = Date.now();
const { chromium } = require('/mnt/node_modules/playwright-core');
(async () => {
  const browser = await chromium.launch({ executablePath: '/usr/lib/chromium/chromium-headless-shell', args: ['--no-sandbox'] });
  const page = await (await browser.newContext()).newPage();
  await page.setContent('<title>forkd</title>');
  if ((await page.title()) !== 'forkd') throw new Error('wrong title');
  process.stdout.write(String(Date.now() - t));
  await browser.close();
})().catch((e) => { console.error(e); process.exit(1); });
`,
  );
  log('native cold start (bubblewrap over the recipe tree)');
  const started = Date.now();
  const run = spawnSync(
    'bwrap',
    [
      '--ro-bind',
      tree,
      '/',
      // The tree is read-only, so what it lacks is mounted under a tmpfs.
      '--tmpfs',
      '/mnt',
      '--ro-bind',
      join(npm, 'node_modules'),
      '/mnt/node_modules',
      '--ro-bind',
      script,
      '/mnt/cold.js',
      '--proc',
      '/proc',
      '--dev',
      '/dev',
      '--tmpfs',
      '/tmp',
      '--tmpfs',
      '/dev/shm',
      '--setenv',
      'HOME',
      '/tmp',
      '--unshare-all',
      '--die-with-parent',
      'node',
      '/mnt/cold.js',
    ],
    { encoding: 'utf8', timeout: 120_000 },
  );
  if (run.error || run.status !== 0) {
    log(
      `native cold start failed: ${run.error?.message ?? run.stderr.trim().split('\n').slice(-3).join(' | ')}`,
    );
    return null;
  }
  log(`native cold start: ${run.stdout} ms in node, ${Date.now() - started} ms with bwrap`);
  return Date.now() - started;
}
