import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InvalidArgumentError } from '../../../src/errors.js';
import {
  decodeFields,
  decodeResponsePayload,
  encodeFields,
  encodeFrame,
  encodeRequest,
  encodeResponsePayload,
  Field,
  FrameDecoder,
  MAX_FRAME,
  ProtocolError,
  RequestType,
  ResponseType,
} from '../../../src/engine/agent/protocol.js';

void test('a request frame has length, id, type and TLV fields in little-endian', () => {
  const frame = encodeRequest(7, RequestType.EXEC, [
    [Field.ARG, 'ls'],
    [Field.TIMEOUT_MS, 1500],
  ]);
  assert.deepEqual(
    frame,
    Buffer.from([
      ...[5 + 7 + 9, 0, 0, 0],
      ...[7, 0, 0, 0],
      3,
      ...[1, 2, 0, 0, 0],
      ...Buffer.from('ls'),
      ...[6, 4, 0, 0, 0],
      ...Buffer.from('1500'),
    ]),
  );
});

void test('fields round-trip, including repeated keys, binary and empty values', () => {
  const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
  const payload = encodeFields([
    [Field.ENV, 'A=1'],
    [Field.ENV, 'B=2'],
    [Field.DATA, all],
    [Field.DATA, Buffer.alloc(0)],
    [Field.TIME_NS, 1700000000123456789n],
  ]);
  const fields = decodeFields(payload);
  assert.deepEqual(
    fields.map(([k]) => k),
    [Field.ENV, Field.ENV, Field.DATA, Field.DATA, Field.TIME_NS],
  );
  assert.equal(fields[0]![1].toString(), 'A=1');
  assert.deepEqual(fields[2]![1], all);
  assert.equal(fields[3]![1].length, 0);
  assert.equal(fields[4]![1].toString(), '1700000000123456789');
});

void test("string fields with NUL and negative integers are the caller's InvalidArgumentError", () => {
  assert.throws(() => encodeFields([[Field.PATH, 'a\0b']]), InvalidArgumentError);
  assert.throws(() => encodeFields([[Field.SIGNAL, -1]]), InvalidArgumentError);
  assert.throws(() => encodeFields([[Field.SIGNAL, 1.5]]), InvalidArgumentError);
});

void test('truncated TLV is a ProtocolError', () => {
  const good = encodeFields([[Field.PATH, '/etc']]);
  assert.throws(() => decodeFields(good.subarray(0, good.length - 1)), ProtocolError);
  assert.throws(() => decodeFields(good.subarray(0, 3)), ProtocolError);
});

void test('response payload is a JSON head then raw body', () => {
  const body = Buffer.from([0, 255, 10, 13]);
  const payload = encodeResponsePayload({ size: 4 }, body);
  const { head, body: out } = decodeResponsePayload(payload);
  assert.deepEqual(head, { size: 4 });
  assert.deepEqual(out, body);
  assert.throws(() => decodeResponsePayload(Buffer.from([9, 0, 0, 0, 0x7b])), ProtocolError);
  const notObject = Buffer.concat([Buffer.from([2, 0, 0, 0]), Buffer.from('[]')]);
  assert.throws(() => decodeResponsePayload(notObject), ProtocolError);
});

void test('FrameDecoder reassembles frames split at every byte and batched together', () => {
  const frames = [
    encodeFrame(1, ResponseType.OK, encodeResponsePayload({ a: 1 })),
    encodeFrame(2, ResponseType.STDOUT, encodeResponsePayload({}, Buffer.from('hello'))),
    encodeFrame(0xffffffff, ResponseType.EXIT, encodeResponsePayload({ exit_code: 0 })),
  ];
  const stream = Buffer.concat(frames);
  const dec = new FrameDecoder();
  const got = [];
  for (let i = 0; i < stream.length; i++) got.push(...dec.push(stream.subarray(i, i + 1)));
  assert.deepEqual(
    got.map((f) => [f.id, f.type]),
    [
      [1, 128],
      [2, 130],
      [0xffffffff, 132],
    ],
  );
  assert.equal(dec.pending, 0);
  const all = new FrameDecoder().push(stream);
  assert.equal(all.length, 3);
  assert.equal(decodeResponsePayload(all[1]!.payload).body.toString(), 'hello');
});

void test('FrameDecoder rejects impossible lengths', () => {
  const tooShort = Buffer.from([4, 0, 0, 0, 1, 0, 0, 0]);
  assert.throws(() => new FrameDecoder().push(tooShort), ProtocolError);
  const tooLong = Buffer.alloc(9);
  tooLong.writeUInt32LE(MAX_FRAME + 1, 0);
  assert.throws(() => new FrameDecoder().push(tooLong), ProtocolError);
  assert.throws(() => encodeFrame(1, 1, Buffer.alloc(MAX_FRAME)), ProtocolError);
});
