// Property test of the RAM diff: for any small parent and child (each page a
// hole, data, or zeros, and each child page kept, rewritten, poked by one byte
// or zeroed), the diff counts exactly the pages that differ and applying it
// to the parent rebuilds the child byte for byte.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { applyMemoryDiff, computeMemoryDiff } from '../../src/snapshot/memory-diff.js';
import { fuzzParams } from './settings.js';

const PAGE = 4096;
const PAGES = 32;

/** A page as the property describes it (small, so a counterexample reads well). */
type PageSpec = null | 'zeros' | { fill: number; at: number };
/** null: a hole. */
type Page = Buffer | null;

const pageSpec: fc.Arbitrary<PageSpec> = fc.oneof(
  fc.constant(null),
  fc.constant('zeros' as const), // written zeros: equal to a hole
  fc.record({ fill: fc.integer({ min: 1, max: 255 }), at: fc.nat(PAGE - 1) }),
);

function makePage(spec: PageSpec): Page {
  if (spec === null) return null;
  if (spec === 'zeros') return Buffer.alloc(PAGE);
  const page = Buffer.alloc(PAGE, spec.fill);
  page[spec.at] = (spec.fill + 1) % 256; // pages of one fill still differ somewhere
  return page;
}

type Change = { kind: 'keep' } | { kind: 'poke'; at: number } | { kind: 'replace'; page: PageSpec };

const childChange: fc.Arbitrary<Change> = fc.oneof(
  fc.constant({ kind: 'keep' as const }),
  fc.record({ kind: fc.constant('poke' as const), at: fc.nat(PAGE - 1) }),
  fc.record({ kind: fc.constant('replace' as const), page: pageSpec }),
);

function applyChange(parent: Page, change: Change): Page {
  if (change.kind === 'keep') return parent;
  if (change.kind === 'replace') return makePage(change.page);
  const page = Buffer.from(parent ?? Buffer.alloc(PAGE));
  page[change.at] = (page[change.at]! + 1) % 256;
  return page;
}

async function writePages(path: string, pages: readonly Page[]): Promise<void> {
  const handle = await open(path, 'w');
  try {
    await handle.truncate(PAGES * PAGE);
    for (const [i, page] of pages.entries()) if (page) await handle.write(page, 0, PAGE, i * PAGE);
  } finally {
    await handle.close();
  }
}

const bytesOf = (page: Page) => page ?? Buffer.alloc(PAGE);
const isZero = (page: Page) => bytesOf(page).every((b) => b === 0);

let dir = '';
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'forkd-memory-diff-fuzz-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('diff then apply rebuilds the child and counts exactly the changed pages', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.tuple(pageSpec, childChange), { minLength: PAGES, maxLength: PAGES }),
      async (spec) => {
        const parent = spec.map(([page]) => makePage(page));
        const child = spec.map(([, change], i) => applyChange(parent[i] ?? null, change));
        const [parentPath, childPath, diffPath, outPath] = ['parent', 'child', 'diff', 'out'].map((n) =>
          join(dir, n),
        ) as [string, string, string, string];
        await writePages(parentPath, parent);
        await writePages(childPath, child);
        const stats = await computeMemoryDiff(parentPath, childPath, diffPath);
        const changed = child.filter((page, i) => !bytesOf(page).equals(bytesOf(parent[i] ?? null)));
        assert.equal(stats.pages, changed.length);
        assert.equal(stats.zeroPages, changed.filter(isZero).length);
        await applyMemoryDiff(parentPath, diffPath, outPath);
        assert.deepEqual(await readFile(outPath), await readFile(childPath));
      },
    ),
    fuzzParams(100),
  );
});
