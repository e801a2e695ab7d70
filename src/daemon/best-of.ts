// Best of k: the scoring step of a time-travel fork, run in every child at
// once. A score is a number: an exec's last line of stdout, or an eval's
// value. A child whose step fails, times out or prints no number has no
// score and ranks last, with the reason. Every call has a deadline and a
// small output cap: the code being scored is the guest's.
import { errorMessage } from '../errors.js';
import type { Sandbox } from '../engine/index.js';
import { HttpError } from './http-errors.js';

export type ScoreStep = { exec: string[]; timeout_secs?: number } | { eval: string; timeout_secs?: number };

export interface Scored {
  sandbox: Sandbox;
  score: number | null;
  scoreError: string | null;
}

const DEFAULT_SCORE_SECS = 60;
export const MAX_SCORE_SECS = 3600;
/** A score is one number: more output than this is not a score. */
const SCORE_OUTPUT_BYTES = 64 * 1024;

export function checkScoreStep(step: ScoreStep, keep: number, k: number): void {
  if ('exec' in step && (step.exec.length === 0 || step.exec[0] === '')) {
    throw new HttpError(400, 'score.exec must not be empty');
  }
  const secs = step.timeout_secs ?? DEFAULT_SCORE_SECS;
  if (!(secs > 0 && secs <= MAX_SCORE_SECS)) {
    throw new HttpError(400, `score.timeout_secs must be from 1 to ${MAX_SCORE_SECS}, got ${secs}`);
  }
  if (!Number.isInteger(keep) || keep < 1 || keep > k) {
    throw new HttpError(400, `keep must be an integer from 1 to k (${k}), got ${keep}`);
  }
}

function parseScore(text: string): number | null {
  const last = text.trim().split('\n').pop()?.trim() ?? '';
  const n = last === '' ? NaN : Number(last);
  return Number.isFinite(n) ? n : null;
}

async function scoreOne(sandbox: Sandbox, step: ScoreStep): Promise<Scored> {
  const timeoutMs = (step.timeout_secs ?? DEFAULT_SCORE_SECS) * 1000;
  try {
    if ('exec' in step) {
      const r = await sandbox.agent.exec(
        { args: step.exec, timeoutMs, maxOutputBytes: SCORE_OUTPUT_BYTES },
        undefined,
        { timeoutMs: timeoutMs + 5000 },
      );
      if (r.exitCode !== 0) {
        const why = r.timedOut ? 'timed out' : `exited ${r.exitCode}`;
        return {
          sandbox,
          score: null,
          scoreError: `score step ${why}: ${r.stderr.toString('utf8').trim().slice(-300)}`,
        };
      }
      const score = parseScore(r.stdout.toString('utf8'));
      return score === null
        ? { sandbox, score, scoreError: 'the score step’s last line of output is not a number' }
        : { sandbox, score, scoreError: null };
    }
    const r = await sandbox.agent.eval(step.eval, { timeoutMs });
    if (r.error !== null)
      return {
        sandbox,
        score: null,
        scoreError: `score eval raised: ${r.error.trim().split('\n').pop() ?? ''}`,
      };
    return typeof r.result === 'number' && Number.isFinite(r.result)
      ? { sandbox, score: r.result, scoreError: null }
      : { sandbox, score: null, scoreError: `the score eval's value is not a number: ${r.repr ?? 'none'}` };
  } catch (err) {
    return { sandbox, score: null, scoreError: `score step failed: ${errorMessage(err)}` };
  }
}

/** Scores every child at once; highest first, unscored last, ties in the children's order. */
export async function rankByScore(children: readonly Sandbox[], step: ScoreStep): Promise<Scored[]> {
  const scored = await Promise.all(children.map((c) => scoreOne(c, step)));
  return scored
    .map((s, i) => ({ s, i }))
    .sort((a, b) => (b.s.score ?? -Infinity) - (a.s.score ?? -Infinity) || a.i - b.i)
    .map(({ s }) => s);
}
