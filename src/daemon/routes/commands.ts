// Streamed and background commands (docs/API-extensions.md): NDJSON events,
// replay for background commands, stdin and kill by command id.
import { PassThrough } from 'node:stream';
import Type from 'typebox';
import type { App, DaemonContext } from '../context.js';
import type { CommandRegistry, CommandSession } from '../command-registry.js';
import { HttpError } from '../http-errors.js';
import {
  CommandBody,
  CommandParams,
  CommandStarted,
  ErrorBody,
  IdParams,
  KillBody,
  StdinBody,
} from '../../api/schemas.js';
import { MAX_EXEC_TIMEOUT_SECS } from './sandboxes.js';

const errors = { 400: ErrorBody, 404: ErrorBody, 409: ErrorBody, 500: ErrorBody };

/** An NDJSON body that follows a command until it ends or the client goes away. */
function eventStream(session: CommandSession): PassThrough {
  const stream = new PassThrough();
  const subscription = session.subscribe({
    write: (event) => {
      const more = stream.write(JSON.stringify(event) + '\n');
      if (event.type === 'exit' || event.type === 'error') stream.end();
      return more;
    },
  });
  // Backpressure: a client that does not read holds the command's output in the guest.
  stream.on('drain', () => subscription.drained());
  stream.on('close', () => subscription.unsubscribe());
  return stream;
}

export function registerCommandRoutes(app: App, ctx: DaemonContext, commands: CommandRegistry): void {
  app.post(
    '/v1/sandboxes/:id/commands',
    {
      schema: {
        params: IdParams,
        body: CommandBody,
        response: { 200: Type.Unknown(), 201: CommandStarted, ...errors },
      },
    },
    async (req, reply) => {
      const sandbox = ctx.registry.get(req.params.id);
      const b = req.body;
      if ((b.args === undefined) === (b.cmd === undefined))
        throw new HttpError(400, 'give exactly one of args and cmd');
      if (b.args !== undefined && (b.args.length === 0 || b.args[0] === ''))
        throw new HttpError(400, 'args must not be empty');
      const secs = b.timeout_secs ?? 60;
      if (secs > MAX_EXEC_TIMEOUT_SECS)
        throw new HttpError(400, `timeout_secs must be at most ${MAX_EXEC_TIMEOUT_SECS}`);
      if (secs === 0 && !b.background)
        throw new HttpError(400, 'timeout_secs 0 (no limit) is for background commands');
      const session = commands.start(sandbox, {
        ...(b.args !== undefined ? { args: b.args } : { shell: b.cmd }),
        env: b.envs,
        cwd: b.cwd,
        stdin: b.stdin,
        stdinOpen: b.stdin_open ?? false,
        timeoutMs: secs * 1000,
      });
      if (b.background) return reply.code(201).send({ command_id: session.id });
      const stream = eventStream(session);
      // A foreground command belongs to its request: a client that goes away cancels it.
      stream.on('close', () => {
        if (!session.finished) session.handle?.kill('SIGKILL');
      });
      return reply.code(200).type('application/x-ndjson').send(stream);
    },
  );

  app.get(
    '/v1/sandboxes/:id/commands/:cid/events',
    { schema: { params: CommandParams, response: { 200: Type.Unknown(), ...errors } } },
    async (req, reply) => {
      ctx.registry.get(req.params.id);
      const session = commands.get(req.params.id, req.params.cid);
      return reply.code(200).type('application/x-ndjson').send(eventStream(session));
    },
  );

  app.post(
    '/v1/sandboxes/:id/commands/:cid/stdin',
    { schema: { params: CommandParams, body: StdinBody, response: { 204: Type.Null(), ...errors } } },
    async (req, reply) => {
      const session = commands.get(req.params.id, req.params.cid);
      if (!session.stdinOpen) throw new HttpError(409, 'this command was not started with stdin_open');
      if (session.finished) throw new HttpError(409, 'this command has finished');
      if (req.body.data) session.handle?.writeStdin(req.body.data);
      if (req.body.eof) session.handle?.closeStdin();
      return reply.code(204).send(null);
    },
  );

  app.post(
    '/v1/sandboxes/:id/commands/:cid/kill',
    {
      schema: {
        params: CommandParams,
        body: Type.Optional(KillBody),
        response: { 204: Type.Null(), ...errors },
      },
    },
    async (req, reply) => {
      const session = commands.get(req.params.id, req.params.cid);
      if (!session.finished) session.handle?.kill(req.body?.signal ?? 9);
      return reply.code(204).send(null);
    },
  );
}
