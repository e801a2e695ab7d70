// `forkd mcp`: the MCP server on stdio, in front of a running daemon.
import type { Command } from 'commander';
import { FORKD_VERSION } from '../../version.js';
import { serveMcpOverStdio } from '../../mcp/server.js';
import { controllerFrom, withRemoteOptions, type RemoteOptions } from '../remote.js';

export function registerMcp(program: Command): void {
  withRemoteOptions(
    program
      .command('mcp')
      .description('serve the daemon’s sandboxes as MCP tools over stdio (for agent hosts)'),
  ).action(async (_o: unknown, cmd: Command) => {
    await serveMcpOverStdio(controllerFrom(cmd.optsWithGlobals<RemoteOptions>()), FORKD_VERSION);
  });
}
