// The forkd MCP server: the daemon's sandboxes as tools for an agent, over
// stdio. It is a client of the daemon (through the SDK), never of the engine.
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import type { Controller } from '../sdk/index.js';
import { registerTools } from './tools.js';

export function createMcpServer(forkd: Controller, version: string): McpServer {
  const server = new McpServer({ name: 'forkd', version });
  registerTools(server, forkd);
  return server;
}

export async function serveMcpOverStdio(forkd: Controller, version: string): Promise<void> {
  await createMcpServer(forkd, version).connect(new StdioServerTransport());
}
