// The agent wire format (docs/agent-protocol.md), as pure functions: frame
// encode/decode, request TLV fields, response JSON head + body. No I/O here,
// so the codec is tested without an agent and shared by any transport.
import { InvalidArgumentError } from '../../errors.js';

/** Largest value of a frame's length field; the agent drops anything longer. */
export const MAX_FRAME = 16 * 1024 * 1024;
/** Bytes of body the client puts in one request frame (leaves room for the other fields). */
export const MAX_REQUEST_BODY = 8 * 1024 * 1024;
/** Bytes the agent puts in one FILE_READ slice, mirrored from guest/agent/agent.h (MAX_BODY). */
export const MAX_READ_SLICE = MAX_FRAME - 64 * 1024;

/** Request frame types (host → guest). */
export const RequestType = {
  PING: 1,
  HYGIENE: 2,
  EXEC: 3,
  STDIN: 4,
  KILL: 5,
  EVAL: 6,
  FILE_READ: 7,
  FILE_WRITE: 8,
  FILE_LIST: 9,
  FILE_STAT: 10,
  FILE_REMOVE: 11,
  MKDIR: 12,
  /** Acknowledges exec output (TARGET = the exec's id, LENGTH = bytes); no reply. */
  CREDIT: 13,
} as const;
export type RequestType = (typeof RequestType)[keyof typeof RequestType];

/** Response frame types (guest → host). */
export const ResponseType = {
  OK: 128,
  ERROR: 129,
  STDOUT: 130,
  STDERR: 131,
  EXIT: 132,
} as const;
export type ResponseType = (typeof ResponseType)[keyof typeof ResponseType];

/** TLV field keys of request payloads. */
export const Field = {
  ARG: 1,
  SHELL: 2,
  ENV: 3,
  CWD: 4,
  STDIN: 5,
  TIMEOUT_MS: 6,
  CODE: 7,
  PATH: 8,
  DATA: 9,
  MODE: 10,
  APPEND: 11,
  PARENTS: 12,
  RECURSIVE: 13,
  SIGNAL: 14,
  TIME_NS: 15,
  ENTROPY: 16,
  VARY: 17,
  STDIN_OPEN: 18,
  OFFSET: 19,
  LENGTH: 20,
  /** EXEC: output bytes the agent may send before it waits for CREDIT. */
  WINDOW: 21,
  /** CREDIT: the id of the exec being acknowledged. */
  TARGET: 22,
} as const;
export type Field = (typeof Field)[keyof typeof Field];

/** One TLV field; integers travel as decimal ASCII, strings as UTF-8. */
export type FieldValue = Buffer | string | number | bigint;
export type FieldList = ReadonlyArray<readonly [Field, FieldValue]>;

/** A decoded frame: `payload` is TLV for requests, head + body for responses. */
export interface Frame {
  id: number;
  type: number;
  payload: Buffer;
}

/** A decoded response payload. */
export interface ResponsePayload {
  head: Record<string, unknown>;
  body: Buffer;
}

export class ProtocolError extends Error {}

function fieldBytes(value: FieldValue): Buffer {
  if (Buffer.isBuffer(value)) return value;
  // These come from callers (exec args, paths, env): a bad one is their mistake, a 400.
  if (typeof value === 'string') {
    if (value.includes('\0'))
      throw new InvalidArgumentError('arguments, paths and environment values cannot contain NUL bytes');
    return Buffer.from(value, 'utf8');
  }
  if (typeof value === 'number' && (!Number.isSafeInteger(value) || value < 0)) {
    throw new InvalidArgumentError(`agent integer fields must be non-negative integers, got ${value}`);
  }
  if (typeof value === 'bigint' && value < 0n)
    throw new InvalidArgumentError('agent integer fields must be non-negative');
  return Buffer.from(value.toString(), 'ascii');
}

/** Encodes TLV fields: `u8 key, u32le len, bytes`. */
export function encodeFields(fields: FieldList): Buffer {
  const parts: Buffer[] = [];
  for (const [key, value] of fields) {
    const bytes = fieldBytes(value);
    const head = Buffer.allocUnsafe(5);
    head.writeUInt8(key, 0);
    head.writeUInt32LE(bytes.length, 1);
    parts.push(head, bytes);
  }
  return Buffer.concat(parts);
}

/** Decodes TLV fields; throws ProtocolError if a length runs past the end. */
export function decodeFields(payload: Buffer): Array<[number, Buffer]> {
  const out: Array<[number, Buffer]> = [];
  let off = 0;
  while (off < payload.length) {
    if (payload.length - off < 5) throw new ProtocolError('truncated field header');
    const key = payload.readUInt8(off);
    const len = payload.readUInt32LE(off + 1);
    if (len > payload.length - off - 5) throw new ProtocolError('field length runs past the frame');
    out.push([key, payload.subarray(off + 5, off + 5 + len)]);
    off += 5 + len;
  }
  return out;
}

/** Encodes one frame: `u32le length, u32le id, u8 type, payload`. */
export function encodeFrame(id: number, type: number, payload: Buffer): Buffer {
  const length = 5 + payload.length;
  if (length > MAX_FRAME) throw new ProtocolError(`frame of ${length} bytes exceeds ${MAX_FRAME}`);
  const head = Buffer.allocUnsafe(9);
  head.writeUInt32LE(length, 0);
  head.writeUInt32LE(id, 4);
  head.writeUInt8(type, 8);
  return Buffer.concat([head, payload]);
}

/** Encodes a request frame from fields. */
export function encodeRequest(id: number, type: RequestType, fields: FieldList = []): Buffer {
  return encodeFrame(id, type, encodeFields(fields));
}

/** Encodes a response payload (JSON head + raw body); the agent's side, used by tests. */
export function encodeResponsePayload(head: Record<string, unknown>, body: Buffer = Buffer.alloc(0)): Buffer {
  const json = Buffer.from(JSON.stringify(head), 'utf8');
  const len = Buffer.allocUnsafe(4);
  len.writeUInt32LE(json.length, 0);
  return Buffer.concat([len, json, body]);
}

/** Splits a response payload into its JSON head and raw body. */
export function decodeResponsePayload(payload: Buffer): ResponsePayload {
  if (payload.length < 4) throw new ProtocolError('response payload shorter than its head length');
  const headLen = payload.readUInt32LE(0);
  if (headLen > payload.length - 4) throw new ProtocolError('response head runs past the frame');
  let head: unknown;
  try {
    head = headLen === 0 ? {} : JSON.parse(payload.toString('utf8', 4, 4 + headLen));
  } catch (err) {
    throw new ProtocolError(`response head is not JSON: ${(err as Error).message}`);
  }
  if (typeof head !== 'object' || head === null || Array.isArray(head)) {
    throw new ProtocolError('response head is not a JSON object');
  }
  return { head: head as Record<string, unknown>, body: payload.subarray(4 + headLen) };
}

/**
 * Incremental frame parser for a byte stream: push chunks, get whole frames.
 * A length outside [5, MAX_FRAME] means the stream is corrupt; push throws.
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;

  push(chunk: Buffer): Frame[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const frames: Frame[] = [];
    for (;;) {
      if (this.buffered < 4) break;
      const length = this.peekLength();
      if (length < 5 || length > MAX_FRAME) throw new ProtocolError(`bad frame length ${length}`);
      if (this.buffered < 4 + length) break;
      const bytes = this.take(4 + length);
      frames.push({ id: bytes.readUInt32LE(4), type: bytes.readUInt8(8), payload: bytes.subarray(9) });
    }
    return frames;
  }

  /** Bytes received that do not yet form a whole frame. */
  get pending(): number {
    return this.buffered;
  }

  private peekLength(): number {
    const first = this.chunks[0]!;
    if (first.length >= 4) return first.readUInt32LE(0);
    const joined = Buffer.concat(this.chunks);
    this.chunks = [joined];
    return joined.readUInt32LE(0);
  }

  private take(n: number): Buffer {
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.chunks = rest.length ? [rest] : [];
    this.buffered = rest.length;
    return out;
  }
}
