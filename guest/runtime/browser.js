'use strict';
// The browser half of node_runtime.js, for runtime.json's kind "browser":
// starts Chromium headless through playwright-core before the snapshot, opens
// a context and a page and warms them, so every child of the snapshot has its
// own copy of a browser that is already running. Each eval's code is the
// body of `async (page, context, browser) => { … }` run against that page.
//
// Chromium is Debian's chromium-headless-shell (the binary, not the /usr/bin
// wrapper script, so the browser is playwright's own child and dies with it).
// It runs without its own sandbox: the guest is root-only and the VM is the
// sandbox.

const fs = require('fs');

const CHROMIUM_PATHS = [
  '/usr/lib/chromium/chromium-headless-shell',
  '/usr/lib/chromium/chromium',
  '/usr/bin/chromium-headless-shell',
  '/usr/bin/chromium',
];

/** The DevTools port on the guest's loopback (src/engine/browser-cdp.ts BROWSER_CDP_PORT; the host reaches it through the agent's relay). */
const CDP_PORT = 9222;

const WARM_PAGE = '<!doctype html><html><head><title>forkd</title></head><body></body></html>';

function chromiumPath() {
  const found = CHROMIUM_PATHS.find((p) => fs.existsSync(p));
  if (!found)
    throw new Error(
      `no Chromium found (looked at ${CHROMIUM_PATHS.join(', ')}): add chromium-headless-shell to the recipe's packages`,
    );
  return found;
}

/**
 * A page's generators, made the child's own, as a string to evaluate: V8
 * keeps Math.random's state and BoringSSL its generator's in the page's
 * memory, so without this every child of a snapshot would draw the parent's
 * sequences. Math.random becomes xoshiro128** (enough for a non-cryptographic
 * generator) seeded from the child's seed and the page's own
 * crypto.getRandomValues. crypto.getRandomValues keeps its native output and
 * XORs it with a ChaCha20 keystream under a 256-bit key from the child's
 * /dev/urandom: still the native generator's strength within one child, and
 * unrelated between children. crypto.randomUUID (secure contexts only) is
 * built on it.
 */
function pageRandomSource(seedWords) {
  return `(() => {
  const seed = new Uint32Array(${JSON.stringify(seedWords)});
  const rotl = (x, k) => (x << k) | (x >>> (32 - k));
  const nativeRandomValues = Crypto.prototype.getRandomValues;
  const s = seed.slice(0, 4);
  const mix = new Uint32Array(4);
  try { nativeRandomValues.call(crypto, mix); } catch {}
  for (let i = 0; i < 4; i++) s[i] ^= mix[i];
  if (!(s[0] | s[1] | s[2] | s[3])) s[0] = 1;
  const next = () => {
    const r = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]; s[2] ^= t; s[3] = rotl(s[3], 11);
    return r;
  };
  const random = () => ((next() >>> 11) * 0x100000000 + next()) / 0x20000000000000;
  Object.defineProperty(Math, 'random', { value: random, writable: true, configurable: true });

  const key = seed.slice(4, 12);
  const state = new Uint32Array(16);
  const x = new Uint32Array(16);
  const stream = new Uint8Array(x.buffer);
  let counter = 0;
  let used = 64;
  const quarter = (a, b, c, d) => {
    x[a] += x[b]; x[d] = rotl(x[d] ^ x[a], 16);
    x[c] += x[d]; x[b] = rotl(x[b] ^ x[c], 12);
    x[a] += x[b]; x[d] = rotl(x[d] ^ x[a], 8);
    x[c] += x[d]; x[b] = rotl(x[b] ^ x[c], 7);
  };
  const refill = () => {
    state.set([0x61707865, 0x3320646e, 0x79622d32, 0x6b206574]);
    state.set(key, 4);
    state[12] = counter++;
    state[13] = Math.floor(counter / 0x100000000);
    state[14] = 0;
    state[15] = 0;
    x.set(state);
    for (let i = 0; i < 10; i++) {
      quarter(0, 4, 8, 12); quarter(1, 5, 9, 13); quarter(2, 6, 10, 14); quarter(3, 7, 11, 15);
      quarter(0, 5, 10, 15); quarter(1, 6, 11, 12); quarter(2, 7, 8, 13); quarter(3, 4, 9, 14);
    }
    for (let i = 0; i < 16; i++) x[i] += state[i];
    used = 0;
  };
  const getRandomValues = function getRandomValues(array) {
    const out = nativeRandomValues.call(this, array);
    const bytes = new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
    for (let i = 0; i < bytes.length; i++) {
      if (used === 64) refill();
      bytes[i] ^= stream[used++];
    }
    return out;
  };
  const randomUUID = function randomUUID() {
    const b = getRandomValues.call(crypto, new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (v) => v.toString(16).padStart(2, '0')).join('');
    return h.slice(0, 8) + '-' + h.slice(8, 12) + '-' + h.slice(12, 16) + '-' + h.slice(16, 20) + '-' + h.slice(20);
  };
  const replace = (name, value) =>
    Object.defineProperty(Crypto.prototype, name, { value, writable: true, configurable: true, enumerable: true });
  replace('getRandomValues', getRandomValues);
  // Only where the page has one: randomUUID exists in secure contexts only.
  if (typeof Crypto.prototype.randomUUID === 'function') replace('randomUUID', randomUUID);
})();`;
}

/** `n` 32-bit words from /dev/urandom (reseeded per child by the agent). */
function urandomWords(n) {
  const b = Buffer.alloc(4 * n);
  const fd = fs.openSync('/dev/urandom', 'r');
  try {
    fs.readSync(fd, b, 0, b.length, null);
  } finally {
    fs.closeSync(fd);
  }
  return Array.from({ length: n }, (_, i) => b.readUInt32LE(i * 4));
}

/** Written by the host at hand-over when the child's egress reaches a network. */
const NETWORK_FILE = '/run/forkd/network';

/**
 * Kills Chromium's network service process, which Chromium then starts
 * afresh: its BoringSSL generator (TLS client randoms, ECDHE key shares) was
 * cloned with the VM and would repeat in every child (measured: 1 distinct
 * client random over 10 children; a new process seeds from the child's
 * reseeded kernel). Contexts and pages survive the restart. Only in a child
 * with a network: without one its TLS reaches nothing outside the guest,
 * and under TCG the new process costs seconds of CPU.
 */
function restartNetworkService() {
  for (const pid of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (cmdline.includes('--utility-sub-type=network.mojom.NetworkService'))
        process.kill(Number(pid), 'SIGKILL');
    } catch {
      // gone already, or not ours to read
    }
  }
}

/** Words pageRandomSource takes: 4 for Math.random, 8 for the ChaCha20 key. */
const SEED_WORDS = 12;

class WarmBrowser {
  constructor(browser, context, page) {
    this.browser = browser;
    this.context = context;
    this.page = page;
  }

  /** The arguments every eval gets, in the order of its parameters. */
  args() {
    return [this.page, this.context, this.browser];
  }

  /**
   * In a child, before its first eval: a network service of its own (when
   * it has a network), and
   * the child's own Math.random and crypto.getRandomValues in every page
   * open now and in every document opened later (an init script registered
   * here, in the child, with the child's seed).
   */
  async reseed() {
    if (fs.existsSync(NETWORK_FILE)) restartNetworkService();
    await this.context.addInitScript({ content: pageRandomSource(urandomWords(SEED_WORDS)) });
    for (const page of this.context.pages()) {
      await page.evaluate(pageRandomSource(urandomWords(SEED_WORDS))).catch(() => {});
    }
  }
}

/** Launches Chromium, opens the warm page and runs what a child's eval will, once. */
async function startBrowser(userRequire) {
  const { chromium } = userRequire('playwright-core');
  const browser = await chromium.launch({
    executablePath: chromiumPath(),
    headless: true,
    args: [
      '--no-sandbox',
      `--remote-debugging-port=${CDP_PORT}`,
      '--remote-debugging-address=127.0.0.1',
      // Background networking (updates, safe browsing, metrics) would only
      // spend a child's CPU and probe its egress.
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-domain-reliability',
      '--no-first-run',
    ],
  });
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.setContent(WARM_PAGE);
  await page.title();
  await page.evaluate(() => document.title.length + Math.random());
  return new WarmBrowser(browser, context, page);
}

module.exports = { startBrowser };
