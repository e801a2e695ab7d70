// A diff link made from a change: fork one child of the parent, let the
// caller change it (a shell command, Python code, files copied in…), then
// branch it with diff: true. Shared by `forkd snapshot diff` and the chain
// bench, which both describe a link as "the parent plus this change".
import type { BranchResult } from './branch.js';
import type { Engine } from './engine.js';
import type { Sandbox } from './sandbox.js';

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
    req.onProgress?.(`writing ${req.tag} as a diff of ${req.from}`);
    return await engine.branch(sandbox, { tag: req.tag, diff: true, onProgress: req.onProgress });
  } finally {
    await sandbox.kill();
  }
}
