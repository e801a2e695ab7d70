// /v1/workspaces: named sandboxes that suspend (live branch + kill) and
// resume (fork the saved state), per API-v1.md.
import { limitsFromBody } from '../views.js';
import { InvalidArgumentError, parseEgress, type EgressPolicy } from '../../engine/index.js';
import Type from 'typebox';
import type { App, DaemonContext } from '../context.js';
import {
  CreateWorkspaceBody,
  ErrorBody,
  NameParams,
  SuspendWorkspaceBody,
  WorkspaceInfo,
} from '../../api/schemas.js';
import { Workspaces } from '../workspaces.js';

const errors = { 400: ErrorBody, 404: ErrorBody, 409: ErrorBody, 500: ErrorBody, 503: ErrorBody };

export function registerWorkspaceRoutes(app: App, ctx: DaemonContext): void {
  const workspaces = new Workspaces(ctx, (message) => app.log.warn(message));
  app.get('/v1/workspaces', { schema: { response: { 200: Type.Array(WorkspaceInfo) } } }, () =>
    workspaces.list(),
  );
  app.post(
    '/v1/workspaces',
    { schema: { body: CreateWorkspaceBody, response: { 201: WorkspaceInfo, ...errors } } },
    async (req, reply) => {
      const info = await workspaces.create({
        name: req.body.name,
        snapshotTag: req.body.snapshot_tag,
        limits: limitsFromBody(req.body),
        egress: workspaceEgress(req.body),
      });
      return reply.code(201).send(info);
    },
  );
  app.get(
    '/v1/workspaces/:name',
    { schema: { params: NameParams, response: { 200: WorkspaceInfo, ...errors } } },
    (req) => workspaces.get(req.params.name),
  );
  app.delete(
    '/v1/workspaces/:name',
    { schema: { params: NameParams, response: { 204: Type.Null(), ...errors } } },
    async (req, reply) => {
      await workspaces.delete(req.params.name);
      return reply.code(204).send(null);
    },
  );
  app.post(
    '/v1/workspaces/:name/suspend',
    {
      schema: {
        params: NameParams,
        body: Type.Optional(SuspendWorkspaceBody),
        response: { 200: WorkspaceInfo, ...errors },
      },
    },
    (req) => workspaces.suspend(req.params.name, { diff: req.body?.diff }),
  );
  app.post(
    '/v1/workspaces/:name/resume',
    { schema: { params: NameParams, response: { 200: WorkspaceInfo, ...errors } } },
    (req) => workspaces.resume(req.params.name),
  );
}

/**
 * `egress` is ours; `restrict_egress` the original's spelling, where an
 * explicit false asks for the internet. Both, disagreeing, is a mistake.
 */
function workspaceEgress(body: { egress?: string; restrict_egress?: boolean }): EgressPolicy {
  const policy = parseEgress(body.egress ?? (body.restrict_egress === false ? 'internet' : 'none'));
  if (body.restrict_egress !== undefined && body.egress !== undefined) {
    if (body.restrict_egress !== (policy.mode === 'none')) {
      throw new InvalidArgumentError(
        `restrict_egress ${body.restrict_egress} contradicts egress ${JSON.stringify(body.egress)}`,
        'restrict_egress',
        { hint: 'pass one of them' },
      );
    }
  }
  return policy;
}
