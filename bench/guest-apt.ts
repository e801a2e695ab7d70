// The host side of installing Debian packages in a guest that has no
// internet: which packages the guest lacks for a package (apt-get --simulate
// against the guest's own sources.list and dpkg status) and their .debs
// (apt-get download into a cache dir, kept between runs). apt runs on a
// private state dir (lists, cache, sources, status), so the answer is the
// guest's, not the host's, and the host's apt state is never touched.
import { mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../src/util/run.js';

export interface DebPackage {
  name: string;
  version: string;
  arch: string;
}

export interface DebFile extends DebPackage {
  /** The file's name in the deb cache dir. */
  file: string;
  bytes: number;
  /** dpkg's Installed-Size, in KiB. */
  installedKib: number;
}

/** `Inst name [old version] (version archive… [arch])`: a package apt would unpack. */
const INST_LINE = /^Inst (\S+)(?: \[[^\]]*\])? \((\S+) .*\[([^\]]+)\]\)/;

export class GuestApt {
  private constructor(
    private readonly stateDir: string,
    readonly debDir: string,
  ) {}

  /**
   * Private apt state under `cacheDir`, its package lists fetched for the
   * guest's `sourcesList` (the guest's /etc/apt/sources.list).
   */
  static async open(cacheDir: string, sourcesList: string): Promise<GuestApt> {
    const stateDir = join(cacheDir, 'apt');
    const debDir = join(cacheDir, 'debs');
    for (const dir of ['lists/partial', 'cache/archives/partial', 'etc/parts', 'etc/preferences']) {
      await mkdir(join(stateDir, dir), { recursive: true });
    }
    await mkdir(debDir, { recursive: true });
    await writeFile(join(stateDir, 'sources.list'), sourcesList);
    await writeFile(join(stateDir, 'status'), '');
    const apt = new GuestApt(stateDir, debDir);
    await run(['apt-get', ...apt.options(), 'update']);
    return apt;
  }

  /** What `apt-get install --no-install-recommends pkg` would unpack on a guest with this dpkg status, in apt's order. */
  async plan(guestStatus: Buffer, pkg: string): Promise<DebPackage[]> {
    await writeFile(join(this.stateDir, 'status'), guestStatus);
    const { stdout } = await run([
      'apt-get',
      ...this.options(),
      'install',
      '--simulate',
      '--no-install-recommends',
      pkg,
    ]);
    const lines = stdout.split('\n');
    // A removal would mean the guest's state and these lists disagree: not a delta to measure.
    const removals = lines.filter((l) => l.startsWith('Remv '));
    if (removals.length > 0)
      throw new Error(`installing ${pkg} would remove packages: ${removals.join('; ')}`);
    return lines.flatMap((line) => {
      const m = INST_LINE.exec(line);
      return m ? [{ name: m[1]!, version: m[2]!, arch: m[3]! }] : [];
    });
  }

  /** The .debs of `pkgs`, downloaded unless the cache has them already. */
  async download(pkgs: readonly DebPackage[]): Promise<DebFile[]> {
    let have = new Set(await readdir(this.debDir));
    const missing = pkgs.filter((p) => !have.has(debFileName(p)));
    if (missing.length > 0) {
      const refs = missing.map((p) => `${p.name}=${p.version}`);
      await run(['apt-get', ...this.options(), 'download', ...refs], { cwd: this.debDir });
      have = new Set(await readdir(this.debDir));
    }
    const installed = await this.installedSizes(pkgs);
    return Promise.all(
      pkgs.map(async (p) => {
        const file = debFileName(p);
        if (!have.has(file)) throw new Error(`apt-get download left no ${file} in ${this.debDir}`);
        const { size } = await stat(join(this.debDir, file));
        return { ...p, file, bytes: size, installedKib: installed.get(p.name) ?? 0 };
      }),
    );
  }

  private async installedSizes(pkgs: readonly DebPackage[]): Promise<Map<string, number>> {
    const sizes = new Map<string, number>();
    if (pkgs.length === 0) return sizes;
    const { stdout } = await run([
      'apt-cache',
      ...this.options(),
      'show',
      ...pkgs.map((p) => `${p.name}=${p.version}`),
    ]);
    for (const stanza of stdout.split(/\n\s*\n/)) {
      const name = /^Package: (\S+)/m.exec(stanza)?.[1];
      const kib = /^Installed-Size: (\d+)/m.exec(stanza)?.[1];
      if (name && kib) sizes.set(name, Number(kib));
    }
    return sizes;
  }

  private options(): string[] {
    const d = this.stateDir;
    return [
      ['Dir::State::Lists', join(d, 'lists')],
      ['Dir::State::status', join(d, 'status')],
      ['Dir::Cache', join(d, 'cache')],
      ['Dir::Etc::sourcelist', join(d, 'sources.list')],
      ['Dir::Etc::sourceparts', join(d, 'etc/parts')],
      ['Dir::Etc::preferencesparts', join(d, 'etc/preferences')],
      // Every path is ours: no lock protects anything another apt uses.
      ['Debug::NoLocking', '1'],
      // apt-get download as root otherwise warns that _apt cannot write here.
      ['APT::Sandbox::User', 'root'],
      ['Acquire::Languages', 'none'],
      ['quiet', '1'],
    ].flatMap(([k, v]) => ['-o', `${k}=${v}`]);
  }
}

/** The name `apt-get download` saves a package under (an epoch's colon URL-encoded). */
export function debFileName(p: DebPackage): string {
  return `${p.name}_${p.version.replace(/:/g, '%3a')}_${p.arch}.deb`;
}
