// E2B's domain mode, as an E2B user sets it up: `forkd serve --e2b-tls
// --e2b-domain e2b.localhost` makes a local CA and serves TLS with a
// certificate for the domain; `forkd e2b env --domain-only` prints only
// E2B_DOMAIN, the API key and NODE_EXTRA_CA_CERTS; an unchanged E2B program
// then reaches https://api.e2b.localhost and https://<port>-<id>.e2b.localhost
// (names that reach loopback through libnss-myhostname, installed by
// scripts/setup.sh) for the API, envd and a server in the sandbox. Without
// the CA the same program is refused: the TLS is real.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import type { RunningDaemon } from '../../../src/daemon/server.js';
import { localTlsPaths } from '../../../src/daemon/e2b/index.js';
import type { Engine } from '../../../src/engine/index.js';
import { runDirEntries, testEngine, TEST_DATA_DIR } from '../../support/engine.js';
import { startE2bDaemon, type E2bTestDaemon } from '../../support/e2b-daemon.js';

const run = promisify(execFile);
const TAG = 'test-e2b-domain';
const DOMAIN = 'e2b.localhost';
let engine: Engine;
let e2b: E2bTestDaemon;
let daemon: RunningDaemon;

before(async () => {
  engine = testEngine();
  await engine.createSnapshot({ tag: TAG, recipe: 'tiny', replace: true, memoryMib: 256 });
  e2b = await startE2bDaemon('e2b-domain', { e2bTls: true, e2bDomain: DOMAIN });
  daemon = e2b.daemon;
});

after(async () => {
  await e2b.close();
  await engine.store.remove(TAG).catch(() => undefined);
  assert.deepEqual(runDirEntries(engine), []);
});

function envCommand(): string {
  const cli = resolve('dist/src/cli/main.js');
  return `node ${cli} e2b env --domain-only --url ${daemon.url} --token-file ${e2b.tokenFile} --data-dir ${TEST_DATA_DIR}`;
}

/** The environment without any E2B or CA setting of the test runner's own. */
function cleanEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith('E2B_') && k !== 'NODE_EXTRA_CA_CERTS'),
  );
}

test('forkd e2b env --domain-only: the domain with the daemon port, the key and the local CA, no URLs', async () => {
  assert.match(daemon.url, /^https:\/\/127\.0\.0\.1:\d+$/);
  const { stdout } = await run('bash', ['-c', `${envCommand()} --json`], { env: cleanEnv() });
  const env = JSON.parse(stdout) as Record<string, string>;
  const port = new URL(daemon.url).port;
  const { caFile, keyFile } = localTlsPaths(TEST_DATA_DIR);
  assert.deepEqual(env, {
    E2B_API_KEY: e2b.token,
    E2B_DOMAIN: `${DOMAIN}:${port}`,
    NODE_EXTRA_CA_CERTS: caFile,
  });
  assert.equal((await stat(keyFile)).mode & 0o777, 0o600, 'the server key is private');
  assert.equal((await stat(join(TEST_DATA_DIR, 'e2b-tls', 'ca-key.pem'))).mode & 0o777, 0o600);
});

test('an unchanged E2B program reaches api.<domain> and <port>-<id>.<domain> over TLS; without the CA it is refused', async () => {
  const program = resolve('examples/e2b-program/sandbox.mjs');
  const env = { ...cleanEnv(), E2B_TEMPLATE: TAG };
  const { stdout } = await run('bash', ['-c', `eval "$(${envCommand()})" && exec node ${program}`], {
    env,
    timeout: 300_000,
  });
  const seen = JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') as Record<string, string>;
  assert.equal(seen.echo, 'hello from Linux\n');
  assert.equal(seen.file, 'served from the sandbox');
  assert.equal(seen.host, `8000-${seen.sandboxId}.${DOMAIN}:${new URL(daemon.url).port}`);
  assert.equal(seen.page, 'served from the sandbox');

  // The same, trusting only the system's CAs: the certificate is refused.
  const untrusted = await run(
    'bash',
    ['-c', `eval "$(${envCommand()})" && unset NODE_EXTRA_CA_CERTS && exec node ${program}`],
    { env, timeout: 120_000 },
  ).then(
    () => null,
    (err: { stderr?: string }) => err.stderr ?? '',
  );
  assert.ok(untrusted !== null, 'without the CA the program must fail');
  assert.match(untrusted, /certificate|self[- ]signed|UNABLE_TO_VERIFY/i);
  const left = daemon.context.registry.list().filter((s) => s.info.snapshotTag === TAG);
  assert.deepEqual(left, [], 'the program killed its sandbox; the refused one made none');
});
