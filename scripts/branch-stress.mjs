// Stress for live branches (a developer's tool, not a test): branches 4 young
// tiny sandboxes at once, round after round, and forks 2 children of every
// branch. A child whose QEMU died is printed with its console tail; a guest
// kernel panic there means the branch's RAM and device state disagree.
// Run after `npm run build`: node scripts/branch-stress.mjs [rounds] [data-dir]
import { Engine } from '../dist/src/engine/index.js';

const rounds = Number(process.argv[2] ?? 15);
const engine = new Engine({ dataDir: process.argv[3] ?? '/tmp/forkd-branch-stress' });
await engine.createSnapshot({ tag: 'stress', recipe: 'tiny', replace: true, memoryMib: 128 });
const forked = await engine.fork({ tag: 'stress', n: 4 });
const sources = forked.children.map((c) => {
  if (!c.ok) throw c.error;
  return c.sandbox;
});
let bad = 0;
for (let round = 0; round < rounds; round++) {
  const tags = sources.map((_, i) => `stress-r${round}-${i}`);
  const branched = await Promise.allSettled(sources.map((s, i) => engine.branch(s, { tag: tags[i] })));
  for (const [i, r] of branched.entries()) {
    if (r.status === 'rejected') console.log(`branch ${tags[i]} failed: ${String(r.reason)}`);
  }
  for (const tag of tags) {
    const children = await engine
      .fork({ tag, n: 2 })
      .catch((err) => ({ children: [{ ok: false, error: err }] }));
    for (const child of children.children) {
      if (!child.ok) {
        bad++;
        console.log(`child of ${tag} failed: ${String(child.error)}\n${child.error.logTail ?? ''}`);
      } else await child.sandbox.kill();
    }
    await engine.store.remove(tag).catch(() => undefined);
  }
  console.log(`round ${round}: ${bad} failed children so far`);
}
await Promise.all(sources.map((s) => s.kill()));
await engine.store.remove('stress');
console.log(`${bad} failed children in ${rounds} rounds`);
process.exit(bad ? 1 : 0);
