// CommandSession's backpressure (pure logic): output is acknowledged to the
// guest only when no follower is backed up, at once when nobody follows, and
// a follower that leaves releases what it held.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CommandSession, type CommandEvent } from '../../src/daemon/command-registry.js';
import type { ExecHandle } from '../../src/engine/agent/types.js';

function session(): { s: CommandSession; acked: number[] } {
  const acked: number[] = [];
  const s = new CommandSession('cmd-1', 'sb-1', false);
  s.handle = { ack: (n: number) => acked.push(n) } as unknown as ExecHandle;
  return { s, acked };
}

const out = (data: string): CommandEvent => ({ type: 'stdout', data });

test('with nobody following, output is acknowledged as it arrives', () => {
  const { s, acked } = session();
  s.push(out('a'), 10);
  s.push(out('b'), 20);
  assert.deepEqual(acked, [10, 20]);
});

test('a backed-up follower holds acknowledgements until it drains; the slowest sets the pace', () => {
  const { s, acked } = session();
  let slowReady = false;
  const slow = s.subscribe({ write: () => slowReady });
  const fast = s.subscribe({ write: () => true });
  s.push(out('a'), 10);
  s.push(out('b'), 20);
  assert.deepEqual(acked, [], 'held while the slow follower is behind');
  slowReady = true;
  slow.drained();
  assert.deepEqual(acked, [30]);
  fast.unsubscribe();
  slow.unsubscribe();
});

test('a follower that leaves while backed up releases what it held', () => {
  const { s, acked } = session();
  const stuck = s.subscribe({ write: () => false });
  s.push(out('a'), 5);
  assert.deepEqual(acked, []);
  stuck.unsubscribe();
  assert.deepEqual(acked, [5]);
});

test('replay on subscribe counts: a follower backed up by the replay holds new output', () => {
  const { s, acked } = session();
  s.push(out('old'), 3);
  const late = s.subscribe({ write: () => false });
  s.push(out('new'), 4);
  assert.deepEqual(acked, [3]);
  late.drained();
  assert.deepEqual(acked, [3, 4]);
});
