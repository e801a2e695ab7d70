// ExecRun's bounds against a scripted transport (pure logic): output kept up
// to the cap then the process killed, acknowledgements batched, an agent
// that runs past its window losing the command, and the eval depth check.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_MAX_OUTPUT_BYTES, ExecRun, OUTPUT_WINDOW } from '../../../src/engine/agent/exec.js';
import { MAX_RESULT_DEPTH, evalFromHead, nestsDeeperThan } from '../../../src/engine/agent/heads.js';
import type { AgentTransport, FrameSink } from '../../../src/engine/agent/pending.js';
import {
  decodeFields,
  encodeFields,
  Field,
  RequestType,
  ResponseType,
} from '../../../src/engine/agent/protocol.js';
import type { FieldList } from '../../../src/engine/agent/protocol.js';
import { AgentError } from '../../../src/errors.js';

class ScriptedTransport implements AgentTransport {
  sink: FrameSink | undefined;
  readonly sent: Array<{ type: RequestType; fields: FieldList }> = [];
  readonly credits: number[] = [];
  closed = false;
  register(sink: FrameSink): number {
    this.sink = sink;
    return 7;
  }
  unregister(): void {
    this.sink = undefined;
  }
  send(_id: number, type: RequestType, fields: FieldList): void {
    this.sent.push({ type, fields });
  }
  credit(_id: number, bytes: number): void {
    this.credits.push(bytes);
  }
  stdout(bytes: number): void {
    this.sink?.onFrame(ResponseType.STDOUT, {}, Buffer.alloc(bytes, 0x61));
  }
  exit(): void {
    this.sink?.onFrame(
      ResponseType.EXIT,
      { exit_code: 137, signal: 'SIGKILL', timed_out: false },
      Buffer.alloc(0),
    );
  }
  kills(): number {
    return this.sent.filter((s) => s.type === RequestType.KILL).length;
  }
}

test('an exec asks for a window, and keeps output up to its cap: past it the process is killed and the result truncated', async () => {
  const t = new ScriptedTransport();
  const run = new ExecRun(t, { args: ['yes'], maxOutputBytes: 100_000 }, {}, {});
  const window = decodeFields(encodeFields(t.sent[0]!.fields)).find(([k]) => k === Field.WINDOW);
  assert.equal(window?.[1].toString(), String(OUTPUT_WINDOW));
  t.stdout(65536);
  assert.equal(t.kills(), 0);
  t.stdout(65536);
  assert.equal(t.kills(), 1, 'killed once the cap is passed');
  t.stdout(65536); // arrives before the exit: dropped
  t.exit();
  const r = await run.wait();
  assert.equal(r.truncated, true);
  assert.equal(r.stdout.length, 100_000);
  assert.equal(DEFAULT_MAX_OUTPUT_BYTES, 64 * 1024 * 1024);
});

test('output is acknowledged in quarter-window batches, or by the caller with manualAck', async () => {
  const auto = new ScriptedTransport();
  new ExecRun(auto, { args: ['yes'] }, {}, {});
  for (let i = 0; i < 8; i++) auto.stdout(65536);
  assert.deepEqual(auto.credits, [OUTPUT_WINDOW / 4, OUTPUT_WINDOW / 4]);
  const t = new ScriptedTransport();
  const run = new ExecRun(t, { args: ['yes'], collectOutput: false }, { manualAck: true }, {});
  for (let i = 0; i < 8; i++) t.stdout(65536);
  assert.deepEqual(t.credits, [], 'nothing acknowledged until the caller says so');
  run.ack(OUTPUT_WINDOW / 2);
  assert.deepEqual(t.credits, [OUTPUT_WINDOW / 2]);
  t.exit();
  assert.equal((await run.wait()).stdout.length, 0, 'collectOutput: false keeps nothing');
});

test('an agent that runs past its window loses the command, not the host memory', async () => {
  const t = new ScriptedTransport();
  const run = new ExecRun(t, { args: ['yes'] }, { manualAck: true }, {});
  for (let i = 0; i < (2 * OUTPUT_WINDOW) / 65536 + 1; i++) t.stdout(65536);
  await assert.rejects(
    run.wait(),
    (err: unknown) => err instanceof AgentError && /flow-control window/.test(err.message),
  );
  assert.equal(t.kills(), 1);
  assert.equal(t.sink, undefined, 'later frames for it find no one');
});

test('eval results nested deeper than the bound are not passed on as JSON; repr stands in', () => {
  let deep: unknown = 1;
  for (let i = 0; i < MAX_RESULT_DEPTH + 1; i++) deep = [deep];
  assert.equal(nestsDeeperThan(deep, MAX_RESULT_DEPTH), true);
  assert.equal(nestsDeeperThan({ a: [1, { b: 2 }] }, 3), false);
  const r = evalFromHead({ result: deep, repr: '[[...]]', error: null, exit_code: 0 });
  assert.equal(r.result, null);
  assert.equal(r.repr, '[[...]]');
});
