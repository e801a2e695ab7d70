// E2B's control API bodies as this layer accepts and answers them, written
// from what the official SDK sends and reads (e2b on npm). Unknown fields
// are allowed: the SDK sends options forkd has no use for (iam, mcp off).
import Type from 'typebox';

const StringMap = Type.Record(Type.String(), Type.String());

export const E2bCreateBody = Type.Object({
  templateID: Type.String({ minLength: 1, maxLength: 128 }),
  timeout: Type.Optional(Type.Integer()),
  metadata: Type.Optional(StringMap),
  envVars: Type.Optional(StringMap),
  allow_internet_access: Type.Optional(Type.Boolean()),
  autoPause: Type.Optional(Type.Boolean()),
  autoPauseMemory: Type.Optional(Type.Boolean()),
  autoResume: Type.Optional(Type.Object({ enabled: Type.Optional(Type.Boolean()) })),
  network: Type.Optional(
    Type.Object({
      allowPublicTraffic: Type.Optional(Type.Boolean()),
      allowOut: Type.Optional(Type.Unknown()),
      denyOut: Type.Optional(Type.Unknown()),
      rules: Type.Optional(Type.Unknown()),
      egressProxy: Type.Optional(Type.Unknown()),
    }),
  ),
  mcp: Type.Optional(Type.Unknown()),
  volumeMounts: Type.Optional(Type.Array(Type.Unknown())),
});

export const E2bTimeoutBody = Type.Object({ timeout: Type.Integer() });

export const E2bConnectBody = Type.Object({
  timeout: Type.Optional(Type.Integer()),
  memory: Type.Optional(Type.Boolean()),
});

export const E2bForkBody = Type.Object({
  timeout: Type.Optional(Type.Integer()),
  count: Type.Optional(Type.Integer()),
});

export const E2bPauseBody = Type.Object({ memory: Type.Optional(Type.Boolean()) });

export const E2bIdParams = Type.Object({ sandboxID: Type.String({ maxLength: 128 }) });

export const E2bListQuery = Type.Object({
  state: Type.Optional(Type.String()),
  metadata: Type.Optional(Type.String()),
  template: Type.Optional(Type.String()),
  startedAfter: Type.Optional(Type.String()),
  order: Type.Optional(Type.String()),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
  nextToken: Type.Optional(Type.String()),
});
