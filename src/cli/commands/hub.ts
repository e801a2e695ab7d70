// `forkd hub serve` (a self-hosted hub) and `forkd hub publish` (add a pack
// to a hub directory's index); `forkd hub build` is in hub-build.ts.
import type { Command } from 'commander';
import { resolve } from 'node:path';
import { publishPack } from '../../hub/publish.js';
import { fetchJson } from '../../hub/download.js';
import { indexUrlFor, parseRegistryIndex, type RegistryIndex } from '../../hub/registry-index.js';
import { startHubServer, DEFAULT_MAX_UPLOAD_BYTES } from '../../hub/server.js';
import { loadToken } from '../../util/bearer-token.js';
import { drainOnSignal } from '../../util/cleanup.js';
import { createPrinter, formatBytes, table } from '../output.js';
import { intOption, type GlobalOptions } from '../context.js';
import { parseBind } from './serve.js';
import { registerHubBuild } from './hub-build.js';

interface HubServeOptions extends GlobalOptions {
  bind: string;
  tokenFile?: string;
  maxUploadMib: number;
  log?: boolean;
}

interface HubPublishOptions extends GlobalOptions {
  name: string;
  version?: string;
  dir: string;
  force?: boolean;
}

export function registerHub(program: Command): void {
  const hub = program
    .command('hub')
    .description('run a snapshot hub, publish packs to one, or build one from recipes');
  registerHubBuild(hub);
  hub
    .command('serve')
    .description(
      'serve DIR/index.json and DIR/packs/ (Range requests), and accept token-authenticated PUT uploads',
    )
    .argument('<dir>', 'hub directory (created if missing)')
    .option('--bind <host:port>', 'address to listen on', '127.0.0.1:7070')
    .option('--token-file <file>', 'bearer token that uploads need; without it the hub is read-only')
    .option(
      '--max-upload-mib <n>',
      'largest upload accepted',
      intOption('--max-upload-mib', 1, 16 * 1024 * 1024),
      DEFAULT_MAX_UPLOAD_BYTES / 2 ** 20,
    )
    .option('--log', 'log every request (JSON lines on stdout)')
    .action(async (dir: string, _o: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals<HubServeOptions>();
      const { host, port } = parseBind(opts.bind);
      const token = opts.tokenFile ? await loadToken(opts.tokenFile) : undefined;
      const server = await startHubServer({
        dir: resolve(dir),
        host,
        port,
        token,
        maxUploadBytes: opts.maxUploadMib * 2 ** 20,
        log: opts.log ?? false,
      });
      const log = (msg: string) => process.stderr.write(`forkd hub: ${msg}\n`);
      drainOnSignal(async (signal) => {
        log(`${signal}: stopping`);
        await server.close();
      });
      log(
        `serving ${resolve(dir)} on ${server.url} (${token ? 'uploads need the token' : 'read-only: no --token-file'})`,
      );
      log(`pull from it: FORKD_HUB_URL=${server.url} forkd pull <owner>/<name>`);
    });

  hub
    .command('publish')
    .description('copy a pack into a hub directory and add it to its index.json')
    .argument('<file>', '.forkd.tar.zst made by `forkd pack`')
    .requiredOption('--name <owner/name>', 'package name, e.g. forkd/python-numpy')
    .option('--version <v>', 'version label (default: the pack’s creation time); also becomes "latest"')
    .option('--dir <dir>', 'hub directory', '.')
    .option('--force', 'replace a version that is already published')
    .action(async (file: string, _o: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals<HubPublishOptions>();
      const out = createPrinter({ json: opts.json ?? false, quiet: opts.quiet ?? false });
      const published = await publishPack({
        hubDir: resolve(opts.dir),
        file: resolve(file),
        name: opts.name,
        version: opts.version,
        force: opts.force,
      });
      out.result(
        { name: published.name, version: published.version, path: published.path, ...published.entry },
        () =>
          `published ${published.name}@${published.version} (${formatBytes(published.entry.size_bytes)}, sha256 ${published.entry.sha256.slice(0, 16)}…) in ${resolve(opts.dir)}`,
      );
    });
}

/** The packages a hub offers, for `forkd images --hub`. */
export async function hubPackages(hub: string): Promise<{ index: RegistryIndex; rows: HubPackageRow[] }> {
  const url = indexUrlFor(hub);
  const index = parseRegistryIndex(await fetchJson(url), url.href);
  const rows: HubPackageRow[] = [];
  for (const [name, pkg] of Object.entries(index.packages).sort(([a], [b]) => a.localeCompare(b))) {
    for (const [version, v] of Object.entries(pkg.versions).sort(([a], [b]) => a.localeCompare(b))) {
      rows.push({ ...v, name, version, description: pkg.description, same_as: v.version ?? null });
    }
  }
  return { index, rows };
}

export interface HubPackageRow {
  name: string;
  version: string;
  description: string;
  url: string;
  sha256: string;
  size_bytes: number;
  memory_mib: number;
  base_image: string;
  created_at: string;
  /** On "latest": the version it stands for. */
  same_as: string | null;
}

export function hubTable(rows: readonly HubPackageRow[]): string {
  if (rows.length === 0) return 'the hub has no packages';
  return table(
    ['PACKAGE', 'VERSION', 'SIZE', 'MEMORY', 'BASE IMAGE', 'CREATED', 'DESCRIPTION'],
    rows.map((r) => [
      r.name,
      r.same_as ? `${r.version} (${r.same_as})` : r.version,
      formatBytes(r.size_bytes),
      `${r.memory_mib} MiB`,
      r.base_image,
      r.created_at,
      r.description,
    ]),
  );
}
