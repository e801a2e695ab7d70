// Controller: one typed method per daemon endpoint (API-v1.md, branch and
// workspaces included, compact not yet; plus the commands and files
// extensions). Thin by design: camelCase options in, wire types out, and
// every error the daemon answers as a ControllerError subclass chosen by its
// code (errors.ts).
import { HttpClient, type RequestOpts } from './http.js';
import { parseNdjson } from './ndjson.js';
import type {
  BrowserInfo,
  ForkResult,
  SnapshotTree,
  CommandEvent,
  EvalResult,
  ExecResult,
  FileEntry,
  HealthInfo,
  PingResult,
  SandboxInfo,
  SnapshotDetails,
  SnapshotInfo,
  WorkspaceInfo,
  StartedCommand,
  VersionInfo,
} from './types.js';

/** Where the daemon is and how to talk to it. */
export interface ControllerOptions {
  /** Daemon base URL; default `FORKD_URL`, else `http://127.0.0.1:8889`. */
  url?: string;
  /** Bearer token; default `FORKD_TOKEN`. */
  token?: string;
  /** A fetch implementation (tests, proxies, other runtimes); default the global one. */
  fetch?: typeof fetch;
}

/** `branch` parameters (`POST /v1/sandboxes/:id/branch`). */
export interface BranchParams {
  tag?: string;
  mode?: 'full' | 'diff' | 'live';
  /** false: return at once with status "writing". */
  wait?: boolean;
  measureDiff?: boolean;
  parentTag?: string;
}

/** `forkSandbox` parameters (`POST /v1/sandboxes/:id/fork`). */
export interface ForkParams {
  /** How many children (1..100). */
  k: number;
  /**
   * Each child's variant: `{name: [one value per child]}` or one object per
   * child. A child sees it as environment variables, as variables in its
   * warm runtime, and in /run/forkd/vary.json.
   */
  vary?: Record<string, unknown[]> | Array<Record<string, unknown>>;
  /** The intermediate snapshot's tag. */
  tag?: string;
  /** Keep the intermediate snapshot (default: removed once the children run). */
  keepSnapshot?: boolean;
  /**
   * Best of k: run this in every child (an exec whose last line of stdout is
   * a number, or an eval whose value is one), rank the children best first
   * and kill all but the best `keep`.
   */
  score?: { exec: string[]; timeoutSecs?: number } | { eval: string; timeoutSecs?: number };
  /** With `score`: how many stay running (default 1). */
  keep?: number;
}

/** `createSnapshot` parameters (`POST /v1/snapshots`). */
export interface CreateSnapshotParams {
  tag: string;
  /** Image recipe, e.g. `tiny` or `python-numpy` (the daemon's default). Not with `kernel`/`rootfs`. */
  image?: string;
  /** Absolute path (on the daemon's host) of a kernel to boot: a bzImage or a PVH vmlinux. With `rootfs`. */
  kernel?: string;
  /** Absolute path of an ext4 image with python3; the daemon copies it and never writes it. With `kernel`. */
  rootfs?: string;
  rw?: boolean;
  /** Accepted for the original API (at most 60) and ignored: the snapshot is taken when the guest is ready. */
  bootWaitSecs?: number;
  /** Guest memory (a forkd addition to v1). */
  memMib?: number;
}

/** `deleteSnapshot` options: `cascade` or `force` (not both). */
export interface DeleteSnapshotOpts extends RequestOpts {
  cascade?: boolean;
  /** Kill sandboxes running from the snapshot first. */
  force?: boolean;
}

/** Per-sandbox quotas beside memoryLimitMib (forkd extension). */
export interface SandboxQuotaParams {
  /** A hard CPU cap in cores (0.5 = half a core). */
  cpuCores?: number | undefined;
  /** CPU share under contention, 1..10000 (100 = default). */
  cpuWeight?: number | undefined;
  /** Threads its QEMU may have (default 512). */
  pidsMax?: number | undefined;
  ioReadBps?: number | undefined;
  ioWriteBps?: number | undefined;
  ioReadIops?: number | undefined;
  ioWriteIops?: number | undefined;
}

function quotaJson(q: SandboxQuotaParams): Record<string, number | undefined> {
  return {
    cpu_cores: q.cpuCores,
    cpu_weight: q.cpuWeight,
    pids_max: q.pidsMax,
    io_read_bps: q.ioReadBps,
    io_write_bps: q.ioWriteBps,
    io_read_iops: q.ioReadIops,
    io_write_iops: q.ioWriteIops,
  };
}

/** `createSandboxes` parameters (`POST /v1/sandboxes`). */
export interface CreateSandboxesParams extends SandboxQuotaParams {
  snapshotTag: string;
  /** How many children (1..1000); default 1. */
  n?: number;
  memoryLimitMib?: number;
  prewarm?: boolean;
  /**
   * What the guests may connect to: `none` (the default), `internet`
   * (public addresses only, never the host or private ranges) or
   * `allow:<domain|cidr>,…`.
   */
  egress?: string;
  /** Accepted for v1 compatibility: a sandbox with egress none has a network namespace of its own (`netns`). */
  perChildNetns?: boolean;
  liveFork?: boolean;
  hugepages?: boolean;
}

/** `exec` options. */
export interface ExecOpts extends RequestOpts {
  /** Kill the command after this long (daemon default 30). */
  timeoutSecs?: number;
}

/** What to run (`POST /v1/sandboxes/:id/commands`): exactly one of `cmd` and `args`. */
export interface CommandParams {
  /** A shell command, run with `/bin/sh -c`. */
  cmd?: string;
  /** An argv, run directly. */
  args?: string[];
  envs?: Record<string, string>;
  cwd?: string;
  /** Initial stdin (UTF-8). */
  stdin?: string;
  /** Keep stdin open for `sendStdin`. */
  stdinOpen?: boolean;
  /** Daemon-side limit (default 60, max 3600; 0 = none, background only). */
  timeoutSecs?: number;
}

/** `sendStdin` options. */
export interface SendStdinOpts extends RequestOpts {
  /** Close stdin after this data. */
  eof?: boolean;
}

/** `killCommand` options. */
export interface KillCommandOpts extends RequestOpts {
  /** Unix signal number; the daemon's default is 9 (SIGKILL). (`signal` is the AbortSignal.) */
  signalNumber?: number;
}

/** `writeFile` options. */
export interface WriteFileOpts extends RequestOpts {
  /** Permission bits, e.g. `0o755`; sent as octal digits. */
  mode?: number;
}

/** `removeFile` options. */
export interface RemoveOpts extends RequestOpts {
  /** Remove a directory and everything in it. */
  recursive?: boolean;
}

/** `mkdir` options. */
export interface MkdirOpts extends RequestOpts {
  /** Create missing parents (the daemon default is true). */
  parents?: boolean;
}

function env(name: string): string | undefined {
  // Not every runtime has `process`; the SDK must load in all of them.
  const proc = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process;
  return proc?.env?.[name] || undefined;
}

const seg = encodeURIComponent;

/** A typed client for one forkd daemon. */
export class Controller {
  /** The daemon's base URL. */
  readonly url: string;
  private readonly http: HttpClient;

  constructor(opts: ControllerOptions = {}) {
    this.url = opts.url ?? env('FORKD_URL') ?? 'http://127.0.0.1:8889';
    const fetchImpl = opts.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.http = new HttpClient({
      baseUrl: this.url,
      token: opts.token ?? env('FORKD_TOKEN'),
      fetch: fetchImpl,
    });
  }

  // ---- meta ----

  /** `GET /healthz` (open even when the daemon has a token). */
  health(opts?: RequestOpts): Promise<HealthInfo> {
    return this.http.json('GET', '/healthz', {}, opts);
  }

  /** `GET /version`. */
  version(opts?: RequestOpts): Promise<VersionInfo> {
    return this.http.json('GET', '/version', {}, opts);
  }

  // ---- snapshots ----

  /** `GET /v1/snapshots`. */
  listSnapshots(opts?: RequestOpts): Promise<SnapshotInfo[]> {
    return this.http.json('GET', '/v1/snapshots', {}, opts);
  }

  /** `POST /v1/snapshots`: boots, warms and freezes a new snapshot (can take minutes). */
  createSnapshot(params: CreateSnapshotParams, opts?: RequestOpts): Promise<SnapshotInfo> {
    const json = {
      tag: params.tag,
      image: params.image,
      kernel: params.kernel,
      rootfs: params.rootfs,
      rw: params.rw,
      boot_wait_secs: params.bootWaitSecs,
      mem_mib: params.memMib,
    };
    return this.http.json('POST', '/v1/snapshots', { json }, opts);
  }

  /** `DELETE /v1/snapshots/:tag`. */
  deleteSnapshot(tag: string, opts?: DeleteSnapshotOpts): Promise<void> {
    const query = { cascade: opts?.cascade || undefined, force: opts?.force || undefined };
    return this.http.empty('DELETE', `/v1/snapshots/${seg(tag)}`, { query }, opts);
  }

  /** `GET /v1/snapshots/:tag/info`: sizes and lineage. */
  snapshotInfo(tag: string, opts?: RequestOpts): Promise<SnapshotDetails> {
    return this.http.json('GET', `/v1/snapshots/${seg(tag)}/info`, {}, opts);
  }

  // ---- sandboxes ----

  /** `GET /v1/sandboxes`. */
  listSandboxes(opts?: RequestOpts): Promise<SandboxInfo[]> {
    return this.http.json('GET', '/v1/sandboxes', {}, opts);
  }

  /** `POST /v1/sandboxes`: forks `n` children (all or nothing). */
  createSandboxes(params: CreateSandboxesParams, opts?: RequestOpts): Promise<SandboxInfo[]> {
    const json = {
      snapshot_tag: params.snapshotTag,
      n: params.n,
      memory_limit_mib: params.memoryLimitMib,
      prewarm: params.prewarm,
      egress: params.egress,
      ...quotaJson(params),
      per_child_netns: params.perChildNetns,
      live_fork: params.liveFork,
      hugepages: params.hugepages,
    };
    return this.http.json('POST', '/v1/sandboxes', { json }, opts);
  }

  /** `PUT /v1/sandboxes/:id/egress`: change what a running sandbox's guest may reach. */
  setEgress(id: string, egress: string, opts?: RequestOpts): Promise<SandboxInfo> {
    return this.http.json(
      'PUT',
      `/v1/sandboxes/${encodeURIComponent(id)}/egress`,
      { json: { egress } },
      opts,
    );
  }

  /** `GET /v1/sandboxes/:id`. */
  getSandbox(id: string, opts?: RequestOpts): Promise<SandboxInfo> {
    return this.http.json('GET', `/v1/sandboxes/${seg(id)}`, {}, opts);
  }

  /** `GET /v1/sandboxes/:id/browser`: where a browser sandbox's CDP endpoint is, through this daemon. */
  getBrowser(id: string, opts?: RequestOpts): Promise<BrowserInfo> {
    return this.http.json('GET', `/v1/sandboxes/${seg(id)}/browser`, {}, opts);
  }

  /** Headers another client (a WebSocket, Playwright) needs to reach this daemon. */
  authHeaders(): Record<string, string> {
    return this.http.authHeaders();
  }

  /** `DELETE /v1/sandboxes/:id`: kills the child. */
  deleteSandbox(id: string, opts?: RequestOpts): Promise<void> {
    return this.http.empty('DELETE', `/v1/sandboxes/${seg(id)}`, {}, opts);
  }

  /** `POST /v1/sandboxes/:id/ping`: round trip to the guest agent. */
  ping(id: string, opts?: RequestOpts): Promise<PingResult> {
    return this.http.json('POST', `/v1/sandboxes/${seg(id)}/ping`, {}, opts);
  }

  /** `POST /v1/sandboxes/:id/exec`: runs argv to completion; a non-zero exit is not an error here. */
  exec(id: string, args: string[], opts?: ExecOpts): Promise<ExecResult> {
    const json = { args, timeout_secs: opts?.timeoutSecs };
    return this.http.json('POST', `/v1/sandboxes/${seg(id)}/exec`, { json }, opts);
  }

  /** `POST /v1/sandboxes/:id/eval`: evaluates code in the guest's runtime. */
  eval(id: string, code: string, opts?: RequestOpts): Promise<EvalResult> {
    return this.http.json('POST', `/v1/sandboxes/${seg(id)}/eval`, { json: { code } }, opts);
  }

  /**
   * `POST /v1/sandboxes/:id/branch`: snapshot the running sandbox into a new
   * tag while it keeps running. With `wait: false` it answers at once with
   * status "writing"; poll listSnapshots until "ready" or "failed".
   */
  branch(id: string, params: BranchParams = {}, opts?: RequestOpts): Promise<SnapshotInfo> {
    const json = {
      tag: params.tag,
      mode: params.mode,
      wait: params.wait,
      measure_diff: params.measureDiff,
      parent_tag: params.parentTag,
    };
    return this.http.json('POST', `/v1/sandboxes/${seg(id)}/branch`, { json }, opts);
  }

  /**
   * `POST /v1/sandboxes/:id/fork`: branches the running sandbox and starts
   * k children from that moment, each with its variant; the source goes on.
   */
  forkSandbox(id: string, params: ForkParams, opts?: RequestOpts): Promise<ForkResult> {
    const score =
      params.score === undefined
        ? undefined
        : 'exec' in params.score
          ? { exec: params.score.exec, timeout_secs: params.score.timeoutSecs }
          : { eval: params.score.eval, timeout_secs: params.score.timeoutSecs };
    const json = {
      k: params.k,
      vary: params.vary,
      tag: params.tag,
      keep_snapshot: params.keepSnapshot,
      score,
      keep: params.keep,
    };
    return this.http.json('POST', `/v1/sandboxes/${seg(id)}/fork`, { json }, opts);
  }

  /** `GET /v1/tree`: snapshots depth-first under the ones they were branched from, with their running sandboxes. */
  tree(opts?: RequestOpts): Promise<SnapshotTree> {
    return this.http.json('GET', '/v1/tree', {}, opts);
  }

  // ---- workspaces ----

  /** `GET /v1/workspaces`. */
  listWorkspaces(opts?: RequestOpts): Promise<WorkspaceInfo[]> {
    return this.http.json('GET', '/v1/workspaces', {}, opts);
  }

  /** `POST /v1/workspaces`: a named sandbox forked from `snapshotTag`. */
  createWorkspace(
    params: SandboxQuotaParams & {
      name: string;
      snapshotTag: string;
      memoryLimitMib?: number;
      /** Its sandboxes' egress policy, kept across resumes: none (default), internet, allow:<domain|cidr>,… */
      egress?: string;
      /** The original's spelling: true is egress none (the default anyway). */
      restrictEgress?: boolean;
    },
    opts?: RequestOpts,
  ): Promise<WorkspaceInfo> {
    const json = {
      name: params.name,
      snapshot_tag: params.snapshotTag,
      memory_limit_mib: params.memoryLimitMib,
      egress: params.egress,
      restrict_egress: params.restrictEgress,
      ...quotaJson(params),
    };
    return this.http.json('POST', '/v1/workspaces', { json }, opts);
  }

  /** `GET /v1/workspaces/:name`. */
  getWorkspace(name: string, opts?: RequestOpts): Promise<WorkspaceInfo> {
    return this.http.json('GET', `/v1/workspaces/${seg(name)}`, {}, opts);
  }

  /** `POST /v1/workspaces/:name/suspend`: save its state (live branch) and stop its sandbox. */
  suspendWorkspace(name: string, opts?: RequestOpts): Promise<WorkspaceInfo> {
    return this.http.json('POST', `/v1/workspaces/${seg(name)}/suspend`, { json: {} }, opts);
  }

  /** `POST /v1/workspaces/:name/resume`: a new sandbox from the saved state. */
  resumeWorkspace(name: string, opts?: RequestOpts): Promise<WorkspaceInfo> {
    return this.http.json('POST', `/v1/workspaces/${seg(name)}/resume`, { json: {} }, opts);
  }

  /** `DELETE /v1/workspaces/:name`: its sandbox and saved states go; the source snapshot stays. */
  deleteWorkspace(name: string, opts?: RequestOpts): Promise<void> {
    return this.http.empty('DELETE', `/v1/workspaces/${seg(name)}`, {}, opts);
  }

  // ---- commands (extension) ----

  /**
   * `POST /v1/sandboxes/:id/commands` in the foreground: resolves once the
   * daemon accepted the command, with its events as they arrive (`start`
   * first, `exit` or `error` last). Consume or `return()` the stream.
   */
  async runCommand(
    id: string,
    params: CommandParams,
    opts?: RequestOpts,
  ): Promise<AsyncGenerator<CommandEvent, void, undefined>> {
    const res = await this.http.send(
      'POST',
      `/v1/sandboxes/${seg(id)}/commands`,
      { json: commandBody(params, false) },
      opts,
    );
    return events(res);
  }

  /** `POST /v1/sandboxes/:id/commands` with `background: true`: resolves with the command id. */
  async startCommand(id: string, params: CommandParams, opts?: RequestOpts): Promise<string> {
    const path = `/v1/sandboxes/${seg(id)}/commands`;
    const started = await this.http.json<StartedCommand>(
      'POST',
      path,
      { json: commandBody(params, true) },
      opts,
    );
    return started.command_id;
  }

  /** `GET .../commands/:cid/events`: replays buffered output, then follows until exit. */
  async commandEvents(
    id: string,
    commandId: string,
    opts?: RequestOpts,
  ): Promise<AsyncGenerator<CommandEvent, void, undefined>> {
    const res = await this.http.send(
      'GET',
      `/v1/sandboxes/${seg(id)}/commands/${seg(commandId)}/events`,
      {},
      opts,
    );
    return events(res);
  }

  /** `POST .../commands/:cid/stdin` (the command must have been started with `stdinOpen`). */
  sendStdin(id: string, commandId: string, data: string, opts?: SendStdinOpts): Promise<void> {
    const json = { data, eof: opts?.eof ?? false };
    return this.http.empty(
      'POST',
      `/v1/sandboxes/${seg(id)}/commands/${seg(commandId)}/stdin`,
      { json },
      opts,
    );
  }

  /** `POST .../commands/:cid/kill`. */
  killCommand(id: string, commandId: string, opts?: KillCommandOpts): Promise<void> {
    const json = opts?.signalNumber === undefined ? {} : { signal: opts.signalNumber };
    return this.http.empty(
      'POST',
      `/v1/sandboxes/${seg(id)}/commands/${seg(commandId)}/kill`,
      { json },
      opts,
    );
  }

  // ---- files (extension) ----

  /** `GET .../files?path=`: the file's bytes. */
  async readFile(id: string, path: string, opts?: RequestOpts): Promise<Uint8Array> {
    const res = await this.http.send('GET', `/v1/sandboxes/${seg(id)}/files`, { query: { path } }, opts);
    return new Uint8Array(await res.arrayBuffer());
  }

  /** `PUT .../files?path=`: writes the file (strings as UTF-8), creating parents. */
  writeFile(id: string, path: string, data: Uint8Array | string, opts?: WriteFileOpts): Promise<void> {
    const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
    const query = {
      path,
      mode: opts?.mode === undefined ? undefined : opts.mode.toString(8).padStart(3, '0'),
    };
    return this.http.empty('PUT', `/v1/sandboxes/${seg(id)}/files`, { query, bytes }, opts);
  }

  /** `GET .../files/list?path=`: a directory's entries. */
  listDir(id: string, path: string, opts?: RequestOpts): Promise<FileEntry[]> {
    return this.http.json('GET', `/v1/sandboxes/${seg(id)}/files/list`, { query: { path } }, opts);
  }

  /** `GET .../files/stat?path=`. */
  stat(id: string, path: string, opts?: RequestOpts): Promise<FileEntry> {
    return this.http.json('GET', `/v1/sandboxes/${seg(id)}/files/stat`, { query: { path } }, opts);
  }

  /** `DELETE .../files?path=`. */
  remove(id: string, path: string, opts?: RemoveOpts): Promise<void> {
    const query = { path, recursive: opts?.recursive || undefined };
    return this.http.empty('DELETE', `/v1/sandboxes/${seg(id)}/files`, { query }, opts);
  }

  /** `POST .../files/mkdir`. */
  mkdir(id: string, path: string, opts?: MkdirOpts): Promise<void> {
    const json = { path, parents: opts?.parents ?? true };
    return this.http.empty('POST', `/v1/sandboxes/${seg(id)}/files/mkdir`, { json }, opts);
  }
}

function commandBody(params: CommandParams, background: boolean): Record<string, unknown> {
  return {
    cmd: params.cmd,
    args: params.args,
    envs: params.envs,
    cwd: params.cwd,
    stdin: params.stdin,
    stdin_open: params.stdinOpen,
    timeout_secs: params.timeoutSecs,
    background,
  };
}

function events(res: Response): AsyncGenerator<CommandEvent, void, undefined> {
  if (!res.body) throw new TypeError('the daemon sent a command stream without a body');
  return parseNdjson<CommandEvent>(res.body);
}
