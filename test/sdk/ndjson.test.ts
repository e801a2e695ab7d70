// parseNdjson without a daemon: lines split across chunks, multi-byte
// characters split across chunks, a last line without a newline, and an
// early break cancelling the body.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseNdjson } from '../../src/sdk/ndjson.js';

function streamOf(chunks: Uint8Array[], onCancel?: () => void): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      const chunk = chunks[i++];
      if (chunk) controller.enqueue(chunk);
      else controller.close();
    },
    cancel: onCancel,
  });
}

async function collect<T>(stream: ReadableStream<Uint8Array>): Promise<T[]> {
  const out: T[] = [];
  for await (const value of parseNdjson<T>(stream)) out.push(value);
  return out;
}

test('values split anywhere across chunks, including inside a UTF-8 character', async () => {
  const bytes = new TextEncoder().encode('{"a":1}\n\n{"s":"héllo ✓"}\n{"last":true}');
  // Every possible split point, one byte at a time.
  const oneByOne = Array.from(bytes, (b) => Uint8Array.of(b));
  const expected = [{ a: 1 }, { s: 'héllo ✓' }, { last: true }];
  assert.deepEqual(await collect(streamOf(oneByOne)), expected);
  for (let cut = 1; cut < bytes.length; cut++) {
    assert.deepEqual(
      await collect(streamOf([bytes.slice(0, cut), bytes.slice(cut)])),
      expected,
      `cut at ${cut}`,
    );
  }
});

test('breaking out early cancels the body', async () => {
  let cancelled = false;
  const lines = new TextEncoder().encode('{"n":1}\n{"n":2}\n');
  const endless = streamOf([lines, lines, lines, lines], () => (cancelled = true));
  for await (const value of parseNdjson<{ n: number }>(endless)) {
    assert.equal(value.n, 1);
    break;
  }
  assert.equal(cancelled, true);
});

test('a line that is not JSON rejects', async () => {
  await assert.rejects(collect(streamOf([new TextEncoder().encode('{"ok":1}\nnot json\n')])), SyntaxError);
});
