// Real VMs from the python-datasci image: a parent whose warm Python runtime
// imported numpy, pandas, scipy and scikit-learn (and the submodules a first
// real use needs) before the freeze, and children whose first eval uses all
// four without importing anything.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { getRecipe } from '../../src/image/index.js';
import { warmChildren } from '../support/engine.js';

const TAG = 'test-python-datasci';
const warm = warmChildren(TAG, 'python-datasci', 2);

const child = (i: number) => warm.sandbox(i).agent;

// A groupby, a regression fit, a distribution: `imported` is what the eval
// had to import, which is nothing when the parent's imports were enough.
const FIRST_EVAL = `
import sys, time
before, t0 = set(sys.modules), time.perf_counter()
df = pandas.DataFrame({'g': ['a', 'b', 'a', 'b'], 'x': [1.0, 2.0, 3.0, 4.0]})
df['y'] = 2 * df['x'] + 1
fit = sklearn.linear_model.LinearRegression().fit(df[['x']], df['y'])
{
    'groupby': df.groupby('g')['x'].sum().to_dict(),
    'coef': round(float(fit.coef_[0]), 6),
    'intercept': round(float(fit.intercept_), 6),
    'cdf': round(float(scipy.stats.norm.cdf(1.959963984540054)), 4),
    'mean': float(numpy.mean(df['y'])),
    'imported': sorted(set(sys.modules) - before),
    'guest_ms': round((time.perf_counter() - t0) * 1000),
}`;

test('every child’s first eval uses all four libraries and imports nothing', async (t) => {
  const runs = await Promise.all(
    warm.children.map(async (c) => {
      const start = performance.now();
      const r = await c.sandbox.agent.eval(FIRST_EVAL);
      return { r, ms: Math.round(performance.now() - start) };
    }),
  );
  for (const [i, { r, ms }] of runs.entries()) {
    assert.equal(r.error, null);
    const { guest_ms: guestMs, ...rest } = r.result as Record<string, unknown>;
    assert.deepEqual(rest, {
      groupby: { a: 4, b: 6 },
      coef: 2,
      intercept: 1,
      cdf: 0.975,
      mean: 6,
      imported: [],
    });
    t.diagnostic(`child ${i}: first eval ${ms} ms round trip, ${String(guestMs)} ms in the guest`);
  }
});

test('the snapshot waited for the imports, and the versions are Debian bookworm’s', async () => {
  const { manifest } = await warm.engine.store.getReady(TAG);
  assert.deepEqual(manifest.runtime, {
    kind: 'python',
    imports: getRecipe('python-datasci').runtime?.imports,
  });
  assert.deepEqual((await child(0).ping()).runtime, { kind: 'python', state: 'ready', ready: true });
  const r = await child(0).eval('[m.__version__ for m in (numpy, pandas, scipy, sklearn)]');
  const [np, pd, sp, sk] = r.result as string[];
  assert.match(np ?? '', /^1\.24\./);
  assert.match(pd ?? '', /^1\.5\./);
  assert.match(sp ?? '', /^1\.10\./);
  assert.match(sk ?? '', /^1\.2\./);
});

test('a DataFrame comes back as its repr (it is not JSON), a Series as JSON through to_dict', async () => {
  const c = child(1);
  const frame = await c.eval("pandas.DataFrame({'a': [1, 2], 'b': ['x', 'y']})");
  assert.equal(frame.result, null);
  assert.equal(frame.repr, '   a  b\n0  1  x\n1  2  y');
  const stats = await c.eval(
    'p = scipy.stats.ttest_ind([1.0, 2, 3, 4], [6.0, 7, 8, 9]).pvalue\n' +
      "pandas.Series({'p_small': bool(p < 0.01), 'sum': float(numpy.arange(4).sum())}).to_dict()",
  );
  assert.deepEqual(stats.result, { p_small: true, sum: 6 });
});

test('scikit-learn shuffles differently in every child (numpy’s generator is reseeded)', async () => {
  const splits = await Promise.all(
    warm.children.map((c) =>
      c.sandbox.agent.eval('sklearn.model_selection.train_test_split(list(range(50)), test_size=5)[1]'),
    ),
  );
  const drawn = splits.map((s) => JSON.stringify(s.result));
  assert.equal(new Set(drawn).size, warm.children.length, drawn.join(' '));
});
