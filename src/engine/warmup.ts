// A recipe's warm-up in the parent: its steps, in order, then its readiness
// check until it passes, all before the freeze, so that every child starts
// with the work done (a database initialised and running, a schema loaded).
// A step that fails, or a check that never passes, fails the snapshot with
// what the guest said.
import { InvalidArgumentError, TimeoutError } from '../errors.js';
import type { WarmupPlan } from '../image/index.js';
import { sleep, type CallOptions } from '../util/abort.js';
import type { AgentClient } from './agent/client.js';

const READY_POLL_MS = 250;
/** One run of the readiness check; a check is a quick probe, not work. */
const READY_CHECK_MS = 30_000;

export async function runWarmup(
  agent: AgentClient,
  plan: WarmupPlan,
  opts: CallOptions & { onProgress?: ((step: string) => void) | undefined } = {},
): Promise<void> {
  const deadline = Date.now() + plan.timeoutMs;
  const left = () => Math.max(1, deadline - Date.now());
  for (const [index, step] of plan.steps.entries()) {
    opts.onProgress?.(`warm-up ${index + 1}/${plan.steps.length}: ${step}`);
    const r = await agent.exec({ shell: step, timeoutMs: left() }, {}, { signal: opts.signal });
    if (r.timedOut) {
      throw new TimeoutError(
        `warm-up step ${index + 1} (${step}) ran past the recipe's warm-up time`,
        plan.timeoutMs,
        {
          hint: 'raise warmup_timeout_secs in the recipe, or make the step faster',
        },
      );
    }
    if (r.exitCode !== 0) {
      throw new InvalidArgumentError(
        `warm-up step ${index + 1} (${step}) exited ${r.exitCode}${tail(r.stderr)}`,
        'warmup',
      );
    }
  }
  if (plan.ready === null) return;
  opts.onProgress?.(`waiting until ready: ${plan.ready}`);
  let last = '';
  for (;;) {
    const r = await agent.exec(
      { shell: plan.ready, timeoutMs: Math.min(left(), READY_CHECK_MS) },
      {},
      { signal: opts.signal },
    );
    if (r.exitCode === 0) return;
    last = `exit ${r.exitCode}${tail(r.stderr)}`;
    if (Date.now() + READY_POLL_MS >= deadline) {
      throw new TimeoutError(
        `the readiness check (${plan.ready}) did not pass in time; last: ${last}`,
        plan.timeoutMs,
        {
          hint: 'raise warmup_timeout_secs in the recipe, or fix what the check waits for',
        },
      );
    }
    await sleep(READY_POLL_MS, opts.signal);
  }
}

/** The last lines a command wrote to stderr, on one line. */
function tail(stderr: Buffer): string {
  const text = stderr.toString('utf8').trim().split('\n').slice(-3).join(' | ');
  return text ? `: ${text.slice(0, 500)}` : '';
}
