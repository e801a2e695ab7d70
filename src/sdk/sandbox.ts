// Sandbox: the E2B-shaped handle on one forked child. Sandbox.create forks
// one child from a snapshot; commands, files and eval all go through a
// Controller for the same daemon.
import { SandboxBrowser } from './browser.js';
import { Commands } from './commands.js';
import { Controller, type BranchParams, type ControllerOptions, type ForkParams } from './controller.js';
import { SandboxEvalError } from './errors.js';
import { Files } from './files.js';
import type { RequestOpts } from './http.js';
import type { PingResult, SandboxInfo, SnapshotInfo } from './types.js';

/** Which daemon to use, plus per-request options. */
export interface SandboxConnectOpts extends ControllerOptions, RequestOpts {}

/** `Sandbox.create` options. */
export interface SandboxCreateOpts extends SandboxConnectOpts {
  /** The snapshot to fork from. */
  snapshotTag: string;
  memoryLimitMib?: number;
  /** Fault the snapshot's memory in before returning. */
  prewarm?: boolean;
}

function controllerFor(opts: ControllerOptions): Controller {
  return new Controller({ url: opts.url, token: opts.token, fetch: opts.fetch });
}

function requestOpts(opts: RequestOpts): RequestOpts {
  return { signal: opts.signal, timeoutMs: opts.timeoutMs };
}

/** A child of `Sandbox.fork`, with the variant it was handed (and, with `score`, how it ranked). */
export type ForkedSandbox = Sandbox & {
  readonly variant: Record<string, unknown>;
  /** With `score`: its score, null when the step failed or gave no number (`scoreError` says why). */
  readonly score?: number | null;
  readonly scoreError?: string | null;
  /** With `score`: among the best `keep` and still running; the others were killed. */
  readonly kept?: boolean;
};

/** One running child VM. */
export class Sandbox {
  /** The sandbox id (`sb-…`). */
  readonly id: string;
  /** The client for the daemon that owns this sandbox. */
  readonly controller: Controller;
  /** Run commands in the sandbox. */
  readonly commands: Commands;
  /** Read and write the sandbox's files. */
  readonly files: Files;
  /** A browser sandbox's Chromium, for your own Playwright. */
  readonly browser: SandboxBrowser;

  /** @internal Use `Sandbox.create` or `Sandbox.connect`. */
  constructor(controller: Controller, id: string) {
    this.controller = controller;
    this.id = id;
    this.commands = new Commands(controller, id);
    this.files = new Files(controller, id);
    this.browser = new SandboxBrowser(controller, id);
  }

  /** Forks one sandbox from `snapshotTag`. */
  static async create(opts: SandboxCreateOpts): Promise<Sandbox> {
    const controller = controllerFor(opts);
    const [info] = await controller.createSandboxes(
      { snapshotTag: opts.snapshotTag, n: 1, memoryLimitMib: opts.memoryLimitMib, prewarm: opts.prewarm },
      requestOpts(opts),
    );
    if (!info) throw new TypeError('the daemon created no sandbox');
    return new Sandbox(controller, info.id);
  }

  /** Attaches to a running sandbox; NotFoundError if there is none. */
  static async connect(id: string, opts: SandboxConnectOpts = {}): Promise<Sandbox> {
    const controller = controllerFor(opts);
    const info = await controller.getSandbox(id, requestOpts(opts));
    return new Sandbox(controller, info.id);
  }

  /** The daemon's running sandboxes. */
  static list(opts: SandboxConnectOpts = {}): Promise<SandboxInfo[]> {
    return controllerFor(opts).listSandboxes(requestOpts(opts));
  }

  /** Kills a sandbox by id. */
  static kill(id: string, opts: SandboxConnectOpts = {}): Promise<void> {
    return controllerFor(opts).deleteSandbox(id, requestOpts(opts));
  }

  /** The sandbox's current description. */
  getInfo(opts?: RequestOpts): Promise<SandboxInfo> {
    return this.controller.getSandbox(this.id, opts);
  }

  /** Round trip to the guest agent. */
  ping(opts?: RequestOpts): Promise<PingResult> {
    return this.controller.ping(this.id, opts);
  }

  /**
   * Evaluates code in the guest's runtime and returns its value as JSON
   * (its repr() string when it has no JSON form, or from an original forkd). Throws
   * SandboxEvalError (with the traceback) when the code raised, and
   * ControllerError when the image has no runtime.
   */
  async eval(code: string, opts?: RequestOpts): Promise<unknown> {
    const r = await this.controller.eval(this.id, code, opts);
    if (r.error !== null) throw new SandboxEvalError(r.error, r.exit_code);
    // `value` is the JSON value (forkd); an original forkd daemon has only the repr() string.
    return r.value !== undefined ? r.value : r.result;
  }

  /**
   * Snapshots this sandbox into a new tag while it keeps running; children
   * of that tag (Sandbox.create({ snapshotTag })) start from this moment.
   */
  branch(params: BranchParams = {}, opts?: RequestOpts): Promise<SnapshotInfo> {
    return this.controller.branch(this.id, params, opts);
  }

  /**
   * Time-travel fork: pauses this sandbox for an instant, snapshots it, and
   * starts `k` children from that moment, each handed its variant (as
   * environment variables, as variables in its warm runtime, and in
   * /run/forkd/vary.json) with its own random generators. This sandbox goes
   * on. The children come back in the order of their variants.
   */
  async fork(params: ForkParams, opts?: RequestOpts): Promise<ForkedSandbox[]> {
    const result = await this.controller.forkSandbox(this.id, params, opts);
    return result.children.map((c) =>
      Object.assign(new Sandbox(this.controller, c.id), {
        variant: c.variant,
        ...(c.score !== undefined
          ? { score: c.score, scoreError: c.score_error ?? null, kept: c.kept ?? false }
          : {}),
      }),
    );
  }

  /**
   * Best of k: forks k ways, runs `score` in every child at once, and
   * answers the children best first; all but the best `keep` (default 1)
   * are killed. `(await sandbox.bestOf({...}))[0]` is the winner.
   */
  bestOf(
    params: ForkParams & { score: NonNullable<ForkParams['score']> },
    opts?: RequestOpts,
  ): Promise<ForkedSandbox[]> {
    return this.fork(params, opts);
  }

  /** Kills the sandbox. */
  kill(opts?: RequestOpts): Promise<void> {
    return this.controller.deleteSandbox(this.id, opts);
  }
}
