// The SDK's error classes, kept few and flat. ControllerError is the protocol
// family (the daemon answered with an error); CommandExitError and
// SandboxEvalError are results the caller asked to have thrown.

/** The daemon answered with a non-2xx status (or reported an error mid-stream). */
export class ControllerError extends Error {
  override readonly name = 'ControllerError';
  /** HTTP status of the response. */
  readonly status: number;
  /** The parsed JSON body (`{"error": "..."}` for the daemon's own errors), or its text. */
  readonly body: unknown;
  /** The request URL, without credentials. */
  readonly url: string;

  constructor(message: string, status: number, body: unknown, url: string) {
    super(message);
    this.status = status;
    this.body = body;
    this.url = url;
  }
}

/** A command ended with a non-zero exit code; its output is kept. */
export class CommandExitError extends Error {
  override readonly name = 'CommandExitError';
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
  /** The signal that ended the command, if any (e.g. `"SIGKILL"`). */
  readonly signal: string | null;
  /** True when the daemon killed the command at its timeout. */
  readonly timedOut: boolean;

  constructor(result: {
    exitCode: number;
    stdout: string;
    stderr: string;
    signal?: string | null;
    timedOut?: boolean;
  }) {
    const how = result.timedOut
      ? 'timed out'
      : result.signal !== null && result.signal !== undefined
        ? `was killed by ${result.signal}`
        : `exited with code ${result.exitCode}`;
    const tail = result.stderr.trim().split('\n').slice(-3).join('\n');
    super(`command ${how}${tail ? `: ${tail}` : ''}`);
    this.exitCode = result.exitCode;
    this.stdout = result.stdout;
    this.stderr = result.stderr;
    this.signal = result.signal ?? null;
    this.timedOut = result.timedOut ?? false;
  }
}

/** Code evaluated in a sandbox raised; `traceback` is the guest's error text. */
export class SandboxEvalError extends Error {
  override readonly name = 'SandboxEvalError';
  readonly traceback: string;
  readonly exitCode: number;

  constructor(traceback: string, exitCode: number) {
    const lines = traceback.trim().split('\n');
    super(lines[lines.length - 1] || 'evaluation failed');
    this.traceback = traceback;
    this.exitCode = exitCode;
  }
}

/**
 * The one place a non-2xx response becomes an error: `message` is the body's
 * `error` field when present, else the status line.
 */
export async function errorFromResponse(res: Response, url: string): Promise<ControllerError> {
  const text = await res.text().catch(() => '');
  let body: unknown = text;
  try {
    body = text ? (JSON.parse(text) as unknown) : null;
  } catch {
    // not JSON: keep the text
  }
  const fromBody =
    typeof body === 'object' && body !== null && typeof (body as { error?: unknown }).error === 'string'
      ? (body as { error: string }).error
      : undefined;
  const safeUrl = withoutCredentials(url);
  const message = fromBody ?? `${res.status} ${res.statusText || 'error'} from ${safeUrl}`;
  return new ControllerError(message, res.status, body, safeUrl);
}

/** `url` without any `user:password@` part, fit for messages and logs. */
export function withoutCredentials(url: string): string {
  try {
    const parsed = new URL(url);
    if (!parsed.username && !parsed.password) return url;
    parsed.username = '';
    parsed.password = '';
    return parsed.toString();
  } catch {
    return url;
  }
}
