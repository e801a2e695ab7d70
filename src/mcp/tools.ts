// The MCP tools: each one call to the daemon through the SDK. Arguments are
// passed as structured values (argv arrays, paths, code) and never put into a
// shell command line.
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { ControllerError, type Controller } from '../sdk/index.js';

const id = z
  .string()
  .regex(/^sb-[A-Za-z0-9_-]+$/)
  .describe('sandbox id, e.g. sb-abc123');

/** What fork_sandbox and best_of both take: how many children and what varies between them. */
const forkInputs = {
  k: z.number().int().min(1).max(100).describe('number of children'),
  vary: z
    .record(z.string(), z.array(z.unknown()))
    .optional()
    .describe('name → one value per child (k values each)'),
};

function ok(value: unknown): CallToolResult {
  return {
    content: [{ type: 'text', text: typeof value === 'string' ? value : JSON.stringify(value, null, 2) }],
  };
}

/** What a failed call tells the model: the daemon's message, code and status when it answered. */
type ToolFailure = { error: string; code: string; status?: number };

function failure(err: unknown): ToolFailure {
  if (err instanceof ControllerError) return { error: err.message, code: err.code, status: err.status };
  // No answer from the daemon (or not a daemon error). forkd's errors carry a snake_case code (the
  // CLI's "cannot reach the daemon" is `remote`); Node's are ECONNREFUSED-style.
  const error = err instanceof Error ? err.message : String(err);
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && /^[a-z][a-z_]*$/.test(code)) return { error, code };
  if (err instanceof Error && err.name === 'TimeoutError') return { error, code: 'timeout' };
  return { error, code: 'internal' };
}

/**
 * A failed call is a tool result the model can read, not a protocol error:
 * `not_found (404): sandbox sb-x not found` as text, the same as
 * `{error, code, status}` structured content.
 */
async function run(work: () => Promise<unknown>): Promise<CallToolResult> {
  try {
    return ok(await work());
  } catch (err) {
    const f = failure(err);
    const text = `${f.code}${f.status === undefined ? '' : ` (${f.status})`}: ${f.error}`;
    return { isError: true, content: [{ type: 'text', text }], structuredContent: f };
  }
}

export function registerTools(server: McpServer, forkd: Controller): void {
  server.registerTool(
    'list_snapshots',
    { description: 'List the warm snapshots sandboxes can be forked from.' },
    () => run(() => forkd.listSnapshots()),
  );
  server.registerTool(
    'spawn_sandboxes',
    {
      description: 'Fork n new sandboxes (microVMs) from a warm snapshot; each resumes in milliseconds.',
      inputSchema: {
        snapshot_tag: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/),
        n: z.number().int().min(1).max(1000).optional(),
        egress: z
          .string()
          .max(8192)
          .optional()
          .describe('what the sandboxes may connect to: none (default), internet, or allow:<domain|cidr>,…'),
        memory_limit_mib: z.number().int().min(16).optional().describe('host memory cap per sandbox'),
        cpu_cores: z.number().min(0.01).max(1024).optional().describe('CPU cap per sandbox, in cores'),
        pids_max: z.number().int().min(16).optional().describe('threads each sandbox’s VMM may have'),
      },
    },
    ({ snapshot_tag, n, egress, memory_limit_mib, cpu_cores, pids_max }) =>
      run(() =>
        forkd.createSandboxes({
          snapshotTag: snapshot_tag,
          n: n ?? 1,
          egress,
          memoryLimitMib: memory_limit_mib,
          cpuCores: cpu_cores,
          pidsMax: pids_max,
        }),
      ),
  );
  server.registerTool('list_sandboxes', { description: 'List running sandboxes.' }, () =>
    run(() => forkd.listSandboxes()),
  );
  server.registerTool('get_sandbox', { description: 'Show one sandbox.', inputSchema: { id } }, (a) =>
    run(() => forkd.getSandbox(a.id)),
  );
  server.registerTool(
    'kill_sandbox',
    { description: 'Stop a sandbox and free everything it used.', inputSchema: { id } },
    (a) =>
      run(async () => {
        await forkd.deleteSandbox(a.id);
        return `killed ${a.id}`;
      }),
  );
  server.registerTool(
    'exec_command',
    {
      description: 'Run a program in a sandbox (argv, no shell) and return stdout, stderr and exit code.',
      inputSchema: {
        id,
        args: z.array(z.string()).min(1).describe('argv, e.g. ["python3", "-c", "print(1)"]'),
        timeout_secs: z.number().positive().max(3600).optional(),
      },
    },
    (a) => run(() => forkd.exec(a.id, a.args, { timeoutSecs: a.timeout_secs })),
  );
  server.registerTool(
    'eval_code',
    {
      description:
        "Evaluate code in the sandbox's warm runtime (Python with numpy for python-numpy); state persists between calls.",
      inputSchema: { id, code: z.string() },
    },
    (a) => run(() => forkd.eval(a.id, a.code)),
  );
  server.registerTool(
    'branch_sandbox',
    {
      description:
        'Snapshot a running sandbox into a new tag while it keeps running (live branch). New sandboxes created from that tag start exactly where it was: files, variables, processes.',
      inputSchema: {
        id,
        tag: z
          .string()
          .regex(/^[A-Za-z0-9_-]{1,64}$/)
          .optional()
          .describe('new snapshot tag (default: generated)'),
      },
    },
    (a) => run(() => forkd.branch(a.id, { tag: a.tag })),
  );
  server.registerTool(
    'fork_sandbox',
    {
      description:
        'Time-travel fork: pause a running sandbox for an instant and start k children from that moment, each with its own variant of some inputs (e.g. {"temperature": [0.2, 0.7, 1.3]}). A child sees its variant as environment variables, as variables in its warm runtime (`vary` and each name) and in /run/forkd/vary.json; the source sandbox goes on.',
      inputSchema: {
        id,
        ...forkInputs,
        keep_snapshot: z
          .boolean()
          .optional()
          .describe('keep the intermediate snapshot (to fork the children again)'),
      },
    },
    (a) => run(() => forkd.forkSandbox(a.id, { k: a.k, vary: a.vary, keepSnapshot: a.keep_snapshot })),
  );
  server.registerTool(
    'best_of',
    {
      description:
        'Best of k: fork a running sandbox k ways (each child with its variant, as in fork_sandbox), run a scoring step in every child at once (a command whose last line of output is a number, or code whose value is one), and keep the best `keep` children running; the others are killed. Answers the children best first with their scores.',
      inputSchema: {
        id,
        ...forkInputs,
        score_command: z
          .array(z.string())
          .min(1)
          .optional()
          .describe('argv run in each child; its last line of stdout is the score'),
        score_code: z
          .string()
          .optional()
          .describe("code evaluated in each child's runtime; its value is the score"),
        keep: z.number().int().min(1).optional().describe('how many of the best stay running (default 1)'),
      },
    },
    (a) =>
      run(() => {
        if ((a.score_command === undefined) === (a.score_code === undefined)) {
          throw Object.assign(new Error('give exactly one of score_command and score_code'), {
            code: 'invalid_argument',
          });
        }
        const score = a.score_command ? { exec: a.score_command } : { eval: a.score_code ?? '' };
        return forkd.forkSandbox(a.id, { k: a.k, vary: a.vary, score, keep: a.keep });
      }),
  );
  server.registerTool(
    'ping_sandbox',
    { description: "Check that a sandbox's agent answers.", inputSchema: { id } },
    (a) => run(() => forkd.ping(a.id)),
  );
  server.registerTool(
    'read_file',
    {
      description: 'Read a text file from a sandbox.',
      inputSchema: { id, path: z.string().startsWith('/') },
    },
    (a) => run(async () => new TextDecoder().decode(await forkd.readFile(a.id, a.path))),
  );
  server.registerTool(
    'write_file',
    {
      description: 'Write a text file in a sandbox (parent directories are created).',
      inputSchema: { id, path: z.string().startsWith('/'), content: z.string() },
    },
    (a) =>
      run(async () => {
        await forkd.writeFile(a.id, a.path, a.content);
        return `wrote ${new TextEncoder().encode(a.content).length} bytes to ${a.path}`;
      }),
  );
}
