// A daemon for the E2B layer's tests: a token (E2B's API key), its own state
// database and audit log in a scratch dir, and the options that point the
// official SDK at it.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDaemon, type DaemonOptions, type RunningDaemon } from '../../src/daemon/server.js';
import { TEST_DATA_DIR } from './engine.js';

export interface E2bTestDaemon {
  daemon: RunningDaemon;
  token: string;
  tokenFile: string;
  /** E2B SDK connection options for this daemon (URL mode), with `extra` on top. */
  opts(extra?: Record<string, unknown>): Record<string, unknown> & { apiKey: string };
  /** Stops the daemon and starts another on the same data and state database (a new port). */
  restart(): Promise<void>;
  /** Stops the daemon and removes the scratch dir. */
  close(): Promise<void>;
}

export async function startE2bDaemon(
  name: string,
  options: Partial<DaemonOptions> = {},
): Promise<E2bTestDaemon> {
  const scratch = await mkdtemp(join(tmpdir(), `forkd-${name}-`));
  const token = `${name}-test-token-0123456789abcdef`;
  const tokenFile = join(scratch, 'token');
  await writeFile(tokenFile, token);
  const start = () =>
    startDaemon({
      dataDir: TEST_DATA_DIR,
      port: 0,
      tokenFile,
      auditLog: join(scratch, 'audit.jsonl'),
      stateDb: join(scratch, 'forkd.db'),
      ...options,
    });
  const running: E2bTestDaemon = {
    daemon: await start(),
    token,
    tokenFile,
    opts: (extra = {}) => ({
      apiKey: token,
      apiUrl: `${running.daemon.url}/e2b`,
      sandboxUrl: `${running.daemon.url}/e2b-sandbox`,
      requestTimeoutMs: 120_000,
      ...extra,
    }),
    restart: async () => {
      await running.daemon.close();
      running.daemon = await start();
    },
    close: async () => {
      await running.daemon.close();
      await rm(scratch, { recursive: true, force: true });
    },
  };
  return running;
}
