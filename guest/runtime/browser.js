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

/** The DevTools port inside the guest (host access goes through the sandbox's port forwarding). */
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
 * Math.random for a page, seeded from the runtime's (per-child) seed and
 * the page's own crypto.getRandomValues, as a string to evaluate: V8 keeps
 * Math.random's state in the page's memory, so without this every child of
 * a snapshot would draw the parent's sequence. xoshiro128** is enough for a
 * non-cryptographic generator; crypto.getRandomValues is left alone.
 */
function pageRandomSource(seedWords) {
  return `(() => {
  const s = new Uint32Array(${JSON.stringify(seedWords)});
  const mix = new Uint32Array(4);
  try { crypto.getRandomValues(mix); } catch {}
  for (let i = 0; i < 4; i++) s[i] ^= mix[i];
  if (!(s[0] | s[1] | s[2] | s[3])) s[0] = 1;
  const rotl = (x, k) => (x << k) | (x >>> (32 - k));
  const next = () => {
    const r = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]; s[2] ^= t; s[3] = rotl(s[3], 11);
    return r;
  };
  const random = () => ((next() >>> 11) * 0x100000000 + next()) / 0x20000000000000;
  Object.defineProperty(Math, 'random', { value: random, writable: true, configurable: true });
})();`;
}

/** Four 32-bit words from /dev/urandom (reseeded per child by the agent). */
function urandomWords() {
  const b = Buffer.alloc(16);
  const fd = fs.openSync('/dev/urandom', 'r');
  try {
    fs.readSync(fd, b, 0, 16, null);
  } finally {
    fs.closeSync(fd);
  }
  return [0, 1, 2, 3].map((i) => b.readUInt32LE(i * 4));
}

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
   * In a child, before its first eval: a new Math.random in every page open
   * now and in every document opened later (an init script registered here,
   * in the child, with the child's seed).
   */
  async reseed() {
    await this.context.addInitScript({ content: pageRandomSource(urandomWords()) });
    for (const page of this.context.pages()) {
      await page.evaluate(pageRandomSource(urandomWords())).catch(() => {});
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

module.exports = { startBrowser, pageRandomSource, CDP_PORT };
