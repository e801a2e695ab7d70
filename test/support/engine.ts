// Shared set-up for VM tests: one data dir per test run for images and
// kernels (downloaded once), and checks that a test left nothing running.
import { mkdirSync, readdirSync } from 'node:fs';
import { resolve } from 'node:path';
import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import { Engine, type ChildResult, type Sandbox } from '../../src/engine/index.js';
import { qemuPidsWith } from '../../src/vmm/process.js';

/** Images and kernels are cached here across test files (and runs). */
export const TEST_DATA_DIR = resolve(process.env.FORKD_TEST_DATA_DIR ?? '.forkd-test');

export function testEngine(dataDir = TEST_DATA_DIR): Engine {
  mkdirSync(dataDir, { recursive: true });
  // Tests must pass on hosts with and without KVM; the default probe decides.
  return new Engine({
    dataDir,
    accel: (process.env.FORKD_TEST_ACCEL as 'tcg' | 'kvm' | undefined) ?? 'auto',
  });
}

/** QEMU processes whose command line mentions `marker` (a run dir or data dir). */
export const qemuProcessesUsing = qemuPidsWith;

export function runDirEntries(engine: Engine): string[] {
  try {
    return readdirSync(engine.dataDir.runDir);
  } catch {
    return [];
  }
}

/** A shell script's stdout in a sandbox; a non-zero exit fails the test with its stderr. */
export async function shOk(sandbox: Sandbox, script: string): Promise<string> {
  const r = await sandbox.agent.exec({ shell: script });
  assert.equal(r.exitCode, 0, r.stderr.toString());
  return r.stdout.toString();
}

/** What a script prints in a fresh child of `tag` (killed after). */
export async function inChildOf(on: Engine, tag: string, script: string): Promise<string> {
  const forked = await on.fork({ tag, n: 1 });
  const child = forked.children[0];
  if (!child?.ok) throw child?.error ?? new Error('no child');
  try {
    return await shOk(child.sandbox, script);
  } finally {
    await child.sandbox.kill();
  }
}

export type OkChild = Extract<ChildResult, { ok: true }>;

/**
 * For a test file: before its tests, a snapshot `tag` of `recipe` and `n`
 * children of it; after them, the children killed, nothing left running and
 * the snapshot removed. The returned object is filled in by then.
 */
export function warmChildren(
  tag: string,
  recipe: string,
  n: number,
): { engine: Engine; children: OkChild[]; sandbox: (i: number) => Sandbox } {
  const fixture = {
    engine: undefined as unknown as Engine,
    children: [] as OkChild[],
    /** Child i's sandbox (its agent: `.agent`). */
    sandbox(i: number): Sandbox {
      const c = fixture.children[i];
      assert.ok(c, `child ${i}`);
      return c.sandbox;
    },
  };
  before(async () => {
    fixture.engine = testEngine();
    await fixture.engine.createSnapshot({ tag, recipe, replace: true });
    const result = await fixture.engine.fork({ tag, n });
    fixture.children = result.children.filter((c): c is OkChild => c.ok);
    assert.equal(fixture.children.length, n, `all ${n} children restored`);
  });
  after(async () => {
    try {
      await Promise.all(fixture.children.map((c) => c.sandbox.kill()));
      assert.deepEqual(qemuPidsWith(fixture.engine.dataDir.runDir), []);
      assert.deepEqual(runDirEntries(fixture.engine), []);
    } finally {
      await fixture.engine.store.remove(tag);
    }
  });
  return fixture;
}
