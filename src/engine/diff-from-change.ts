// A diff link made from a change: fork one child of the parent, let the
// caller change it (a shell command, Python code, files copied in…), then
// branch it with diff: true. Shared by `forkd snapshot diff` and the chain
// bench, which both describe a link as "the parent plus this change".
import type { BranchResult } from './branch.js';
import type { Engine } from './engine.js';
import type { Sandbox } from './sandbox.js';

const TIDY_BEFORE_DIFF = 'sync; fstrim / 2>/dev/null; sync; echo 3 > /proc/sys/vm/drop_caches';

export interface DiffFromChangeRequest {
  /** The parent snapshot. */
  from: string;
  /** The new link's tag. */
  tag: string;
  /** Applies the change to the forked child; a throw leaves no link behind. */
  change: (sandbox: Sandbox) => Promise<void>;
  onProgress?: (step: string) => void;
}

export async function diffFromChange(engine: Engine, req: DiffFromChangeRequest): Promise<BranchResult> {
  await engine.store.assertTagFree(req.tag); // before a child is forked for nothing
  req.onProgress?.(`forking ${req.from}`);
  const forked = await engine.fork({ tag: req.from, n: 1 });
  const child = forked.children[0];
  if (!child?.ok) throw child?.error ?? new Error('no child');
  const sandbox = child.sandbox;
  try {
    await req.change(sandbox);
    // What the change left behind need not be in the diff: blocks of deleted
    // files (trimmed after a sync: ext4 does not trim what an uncommitted
    // delete freed) and the clean page cache (zero once dropped, with
    // init_on_free). Best effort: a guest without fstrim still branches.
    req.onProgress?.('trimming freed blocks and dropping the page cache');
    await sandbox.agent.exec({ shell: TIDY_BEFORE_DIFF, timeoutMs: 60_000 }).catch(() => undefined);
    req.onProgress?.(`writing ${req.tag} as a diff of ${req.from}`);
    return await engine.branch(sandbox, { tag: req.tag, diff: true, onProgress: req.onProgress });
  } finally {
    await sandbox.kill();
  }
}
