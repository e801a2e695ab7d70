// Real VMs from the postgres-fixture image: a parent whose warm runtime
// started PostgreSQL and whose warm-up loaded the example schema before the
// freeze, and children that answer SQL at once, keep their session across
// evals and each have a database of their own.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { warmChildren } from '../support/engine.js';

const TAG = 'test-postgres-fixture';
const warm = warmChildren(TAG, 'postgres-fixture', 2);

const child = (i: number) => warm.sandbox(i).agent;

test('the snapshot waited for the server, the runtime and the schema', async () => {
  const { manifest } = await warm.engine.store.getReady(TAG);
  assert.deepEqual(manifest.runtime, { kind: 'postgres', imports: [] });
  assert.deepEqual((await child(0).ping()).runtime, { kind: 'postgres', state: 'ready', ready: true });
  const r = await child(0).eval(
    "SELECT current_user AS who, split_part(current_setting('server_version'), '.', 1) AS major, " +
      '(SELECT count(*) FROM customers) AS customers, (SELECT count(*) FROM order_items) AS items',
  );
  assert.equal(r.error, null);
  assert.deepEqual(r.result, [{ who: 'postgres', major: '15', customers: 4, items: 6 }]);
});

test('rows come back as objects and as a psql-like table; commands as their tag', async () => {
  const c = child(0);
  const rows = await c.eval(
    "SELECT id, name, price FROM products WHERE sku IN ('KB-01', 'CB-10') ORDER BY id",
  );
  assert.deepEqual(rows, {
    result: [
      { id: 1, name: 'Mechanical keyboard', price: 89.9 },
      { id: 4, name: 'USB-C cable', price: 9.99 },
    ],
    repr: [
      ' id |         name        | price',
      '----+---------------------+-------',
      '  1 | Mechanical keyboard | 89.90',
      '  4 | USB-C cable         |  9.99',
      '(2 rows)',
    ].join('\n'),
    error: null,
    exitCode: 0,
  });
  // Split as psql splits: not at the semicolons in quotes, dollar quotes,
  // comments or a SQL-standard function body; the last rows are the result.
  const many = await c.eval(
    [
      'CREATE TABLE notes (body text);',
      "INSERT INTO notes VALUES ('a;b'), ($$c;d$$); -- e;f",
      '/* g; */ CREATE FUNCTION note_count() RETURNS bigint LANGUAGE sql',
      '  BEGIN ATOMIC SELECT count(*) FROM notes; END;',
      'SELECT body FROM notes ORDER BY body;',
      'SELECT note_count() AS n, 1 AS n;',
      'DELETE FROM notes',
    ].join('\n'),
  );
  assert.equal(many.error, null);
  assert.deepEqual(
    many.result,
    [{ n: 2, n_2: 1 }],
    'the last statement that returned rows, repeated names numbered',
  );
  assert.match(
    many.repr ?? '',
    /^CREATE TABLE\nINSERT 0 2\nCREATE FUNCTION\n\n body\n------\n a;b\n c;d\n\(2 rows\)\n\n/,
  );
  assert.match(many.repr ?? '', /\n\(1 row\)\n\nDELETE 2$/);
  assert.deepEqual((await c.eval('UPDATE products SET stock = stock')).result, {
    command: 'UPDATE 5',
    rowcount: 5,
  });
  assert.deepEqual(await c.eval('-- only a comment'), { result: null, repr: null, error: null, exitCode: 0 });
});

test('the session persists across evals: an open transaction, a temp table, a setting', async () => {
  const c = child(0);
  await c.eval(
    "CREATE TEMP TABLE scratch (x int); INSERT INTO scratch VALUES (1); SET application_name = 'mine'",
  );
  await c.eval('BEGIN; INSERT INTO scratch VALUES (2)');
  assert.deepEqual((await c.eval('SELECT count(*) AS n FROM scratch')).result, [{ n: 2 }]);
  await c.eval('ROLLBACK');
  assert.deepEqual(
    (await c.eval("SELECT count(*) AS n, current_setting('application_name') AS app FROM scratch")).result,
    [{ n: 1, app: 'mine' }],
  );
});

test('SQL errors come back as errors, notices as stderr, and the session goes on', async () => {
  const c = child(1);
  const missing = await c.eval('SELECT * FROM nope');
  assert.equal(missing.exitCode, 1);
  assert.equal(missing.result, null);
  assert.equal(
    missing.error,
    'ERROR:  relation "nope" does not exist\nLINE 1: SELECT * FROM nope\n                      ^\n',
  );
  // Statements before the failing one are done (autocommit), those after it never run.
  const partial = await c.eval('CREATE TABLE done (x int); SELECT 1/0; CREATE TABLE never (x int)');
  assert.equal(partial.exitCode, 1);
  assert.match(partial.error ?? '', /^ERROR: {2}division by zero/);
  assert.equal(partial.repr, 'CREATE TABLE');
  const tables = await c.eval(
    "SELECT string_agg(relname, ',' ORDER BY relname) AS t FROM pg_class WHERE relname IN ('done', 'never')",
  );
  assert.deepEqual(tables.result, [{ t: 'done' }]);
  const notice = await c.eval("DO $$ BEGIN RAISE NOTICE 'hello %', 42; END $$; SELECT 'after' AS a");
  assert.equal(notice.stderr, 'NOTICE:  hello 42\n');
  assert.deepEqual(notice.result, [{ a: 'after' }]);
  const slow = await c.eval("SET statement_timeout = '200ms'; SELECT pg_sleep(5)");
  assert.match(slow.error ?? '', /canceling statement due to statement timeout/);
  assert.deepEqual((await c.eval('RESET statement_timeout; SELECT 6 * 7 AS answer')).result, [
    { answer: 42 },
  ]);
});

test('each child has its own database and its own random numbers', async (t) => {
  const [a, b] = [child(0), child(1)];
  const wrote = await a.eval(
    "INSERT INTO customers (name, email, country, joined) VALUES ('Alan Turing', 'alan@example.org', 'GB', '2024-07-01') RETURNING id",
  );
  assert.deepEqual(wrote.result, [{ id: 5 }]);
  assert.deepEqual((await a.eval("SELECT count(*) AS n FROM customers WHERE name = 'Alan Turing'")).result, [
    { n: 1 },
  ]);
  assert.deepEqual((await b.eval("SELECT count(*) AS n FROM customers WHERE name = 'Alan Turing'")).result, [
    { n: 0 },
  ]);
  // Each child's session is a backend started after the hand-over, so neither
  // random() nor gen_random_uuid() (OpenSSL) repeats the parent's stream.
  const draws = await Promise.all(
    [a, b].map((c) => c.eval('SELECT random() AS r, gen_random_uuid()::text AS u')),
  );
  const [ra, rb] = draws.map((d) => (d.result as Array<{ r: number; u: string }>)[0]!);
  assert.notEqual(ra?.r, rb?.r);
  assert.notEqual(ra?.u, rb?.u);
  t.diagnostic(`random() ${ra?.r} / ${rb?.r}`);
});
