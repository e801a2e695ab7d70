// Property tests of everything that reads bytes a guest wrote: the frame
// decoder, TLV fields and response payloads, and the typed readers of each
// reply. Whatever the bytes, they either decode or fail with the codec's own
// error (never a TypeError, a RangeError or a hang), and valid input decodes
// to what was encoded however the stream is split.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  decodeFields,
  decodeResponsePayload,
  encodeFields,
  encodeFrame,
  encodeResponsePayload,
  FrameDecoder,
  MAX_FRAME,
  ProtocolError,
  type Frame,
} from '../../src/engine/agent/protocol.js';
import {
  evalFromHead,
  exitFromHead,
  fileInfoFromHead,
  hygieneFromHead,
  listFromHead,
  MAX_RESULT_DEPTH,
  nestsDeeperThan,
  pingFromHead,
  readSliceFromHead,
} from '../../src/engine/agent/heads.js';
import { AgentError } from '../../src/errors.js';
import { fuzzParams } from './settings.js';

function splitAt(bytes: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const parts: Buffer[] = [];
  let at = 0;
  for (const p of points) {
    parts.push(bytes.subarray(at, p));
    at = p;
  }
  parts.push(bytes.subarray(at));
  return parts;
}

const frameArb = fc.record({
  id: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
  type: fc.integer({ min: 0, max: 255 }),
  payload: fc.uint8Array({ maxLength: 2048 }).map((a) => Buffer.from(a)),
});

test('frames decode to what was encoded, however the stream is split', () => {
  fc.assert(
    fc.property(
      fc.array(frameArb, { maxLength: 8 }),
      fc.array(fc.nat(), { maxLength: 12 }),
      (frames, cuts) => {
        const bytes = Buffer.concat(frames.map((f) => encodeFrame(f.id, f.type, f.payload)));
        const decoder = new FrameDecoder();
        const out: Frame[] = [];
        for (const part of splitAt(bytes, cuts)) out.push(...decoder.push(part));
        assert.equal(decoder.pending, 0);
        assert.deepEqual(
          out.map((f) => [f.id, f.type, Buffer.from(f.payload)]),
          frames.map((f) => [f.id, f.type, f.payload]),
        );
      },
    ),
    fuzzParams(),
  );
});

test('arbitrary bytes either decode or fail with a ProtocolError; nothing buffers past one frame', () => {
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 16 }), (chunks) => {
      const decoder = new FrameDecoder();
      try {
        for (const c of chunks) {
          decoder.push(Buffer.from(c));
          assert.ok(decoder.pending <= MAX_FRAME + 4);
        }
      } catch (err) {
        assert.ok(err instanceof ProtocolError, String(err));
      }
    }),
    fuzzParams(),
  );
});

test('TLV fields round-trip, and arbitrary payloads decode or fail with a ProtocolError', () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.integer({ min: 1, max: 22 }), fc.uint8Array({ maxLength: 64 })), { maxLength: 8 }),
      fc.uint8Array({ maxLength: 128 }),
      (fields, junk) => {
        const encoded = encodeFields(fields.map(([k, v]) => [k as 1, Buffer.from(v)] as const));
        assert.deepEqual(
          decodeFields(encoded).map(([k, v]) => [k, [...v]]),
          fields.map(([k, v]) => [k, [...v]]),
        );
        try {
          decodeFields(Buffer.from(junk));
        } catch (err) {
          assert.ok(err instanceof ProtocolError, String(err));
        }
      },
    ),
    fuzzParams(),
  );
});

test('response payloads: JSON objects round-trip; anything else is a ProtocolError', () => {
  fc.assert(
    fc.property(
      fc.dictionary(fc.string(), fc.jsonValue()),
      fc.uint8Array({ maxLength: 64 }),
      fc.uint8Array({ maxLength: 64 }),
      (head, body, junk) => {
        const decoded = decodeResponsePayload(encodeResponsePayload(head, Buffer.from(body)));
        assert.deepEqual(decoded.head, JSON.parse(JSON.stringify(head)));
        assert.deepEqual([...decoded.body], [...body]);
        try {
          decodeResponsePayload(Buffer.from(junk));
        } catch (err) {
          assert.ok(err instanceof ProtocolError, String(err));
        }
      },
    ),
    fuzzParams(),
  );
});

test('every reply reader takes any JSON head: a typed result or an AgentError, nothing else', () => {
  const readers = [
    pingFromHead,
    hygieneFromHead,
    exitFromHead,
    evalFromHead,
    readSliceFromHead,
    listFromHead,
    (h: Record<string, unknown>) => fileInfoFromHead(h),
  ];
  fc.assert(
    fc.property(fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 6 })), (head) => {
      for (const read of readers) {
        try {
          read(head);
        } catch (err) {
          assert.ok(err instanceof AgentError, `${read.name}: ${String(err)}`);
        }
      }
    }),
    fuzzParams(),
  );
});

test('an eval result is passed on only when it nests no deeper than the bound', () => {
  const nested = fc.letrec((tie) => ({
    value: fc.oneof(
      { depthSize: 'small' },
      fc.integer(),
      fc.array(tie('value'), { maxLength: 2 }),
      fc.dictionary(fc.string({ maxLength: 2 }), tie('value'), { maxKeys: 2 }),
    ),
  })).value;
  fc.assert(
    fc.property(nested, fc.integer({ min: 0, max: MAX_RESULT_DEPTH + 50 }), (value, extra) => {
      let deep: unknown = value;
      for (let i = 0; i < extra; i++) deep = [deep];
      const r = evalFromHead({ result: deep, repr: 'r', error: null, exit_code: 0 });
      if (r.result !== null) {
        assert.equal(nestsDeeperThan(r.result, MAX_RESULT_DEPTH), false);
        JSON.stringify(r.result); // serialisable without running out of stack
      }
    }),
    fuzzParams(),
  );
});
