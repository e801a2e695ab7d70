// The registry index: one JSON document that maps package names
// ("owner/name") and versions to packs (URL, sha256, size). A hub is any web
// server that serves one; `forkd hub serve` also maintains it. Pack URLs may
// be relative to the index, so a hub directory can move between hosts. Each
// version records its snapshot's content hash and, for a diff pack, the
// ancestors it needs, so that a pull can fetch those first.
import { randomBytes } from 'node:crypto';
import { readFile, rename, writeFile } from 'node:fs/promises';
import Type, { type Static } from 'typebox';
import { Value } from 'typebox/value';
import { CorruptError, InvalidArgumentError, NotFoundError } from '../errors.js';
import { TAG_PATTERN } from '../snapshot/tag.js';
import { MAX_PACK_CHAIN } from './pack-manifest.js';

export const INDEX_SCHEMA_VERSION = 1;
export const INDEX_FILE = 'index.json';
export const LATEST = 'latest';

const NAME_PART = '[a-z0-9][a-z0-9._-]{0,63}';
export const PACKAGE_NAME = new RegExp(`^${NAME_PART}/${NAME_PART}$`);
export const PACKAGE_VERSION = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/;

const SHA256 = '^[0-9a-f]{64}$';

export const IndexVersion = Type.Object({
  url: Type.String({ minLength: 1 }),
  sha256: Type.String({ pattern: SHA256 }),
  size_bytes: Type.Integer({ minimum: 1 }),
  memory_mib: Type.Integer({ minimum: 1 }),
  base_image: Type.String(),
  created_at: Type.String(),
  /** On "latest": the version it stands for. */
  version: Type.Optional(Type.String()),
  /** The key id that signed the pack (absent: unsigned). */
  signer: Type.Optional(Type.String({ pattern: '^[0-9a-f]{16}$' })),
  /** The pack's signature over its manifest, as in the pack. */
  signature: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9+/]{86}==$' })),
  /** The content hash of the snapshot the pack installs: how a diff's ancestors are found. */
  content_hash: Type.Optional(Type.String({ pattern: SHA256 })),
  /** For a diff pack: the ancestors it needs installed, root first (absent when it carries them). */
  chain: Type.Optional(
    Type.Array(
      Type.Object({
        tag: Type.String({ pattern: TAG_PATTERN.source }),
        content_hash: Type.String({ pattern: SHA256 }),
      }),
      { maxItems: MAX_PACK_CHAIN },
    ),
  ),
});
export type IndexVersion = Static<typeof IndexVersion>;

export const IndexPackage = Type.Object({
  description: Type.String(),
  versions: Type.Record(Type.String(), IndexVersion),
});
export type IndexPackage = Static<typeof IndexPackage>;

export const RegistryIndex = Type.Object({
  schema_version: Type.Integer({ minimum: 1 }),
  packages: Type.Record(Type.String(), IndexPackage),
});
export type RegistryIndex = Static<typeof RegistryIndex>;

export function emptyIndex(): RegistryIndex {
  return { schema_version: INDEX_SCHEMA_VERSION, packages: {} };
}

export function parseRegistryIndex(value: unknown, source: string): RegistryIndex {
  const version = (value as { schema_version?: unknown } | null)?.schema_version;
  if (typeof version === 'number' && version > INDEX_SCHEMA_VERSION) {
    throw new CorruptError(
      `${source} is a registry index of schema ${version}; this forkd reads schema ${INDEX_SCHEMA_VERSION}`,
      source,
      { hint: 'upgrade forkd' },
    );
  }
  const problem = Value.Errors(RegistryIndex, value)[0];
  if (problem) {
    throw new CorruptError(
      `${source} is not a registry index: ${problem.instancePath || '/'} ${problem.message}`,
      source,
    );
  }
  return value as RegistryIndex;
}

export interface PackageRef {
  name: string;
  version: string;
}

/** "owner/name" or "owner/name@version" (version defaults to latest). */
export function parsePackageRef(ref: string): PackageRef {
  const at = ref.lastIndexOf('@');
  const name = at === -1 ? ref : ref.slice(0, at);
  const version = at === -1 ? LATEST : ref.slice(at + 1);
  if (!PACKAGE_NAME.test(name)) {
    throw new InvalidArgumentError(`invalid package name ${JSON.stringify(name)}`, 'package', {
      hint: 'packages are named owner/name (lower case, digits, . _ -), optionally @version',
    });
  }
  if (!PACKAGE_VERSION.test(version)) {
    throw new InvalidArgumentError(`invalid package version ${JSON.stringify(version)}`, 'version', {
      hint: 'versions are 1-64 characters from A-Z a-z 0-9 . _ + -',
    });
  }
  return { name, version };
}

export function resolvePackage(index: RegistryIndex, ref: PackageRef, source: string): IndexVersion {
  const pkg = index.packages[ref.name];
  if (!pkg) {
    const known = Object.keys(index.packages).sort();
    throw new NotFoundError(
      `package ${ref.name} is not in ${source}`,
      { kind: 'package', name: ref.name },
      { hint: known.length ? `it has: ${known.slice(0, 10).join(', ')}` : 'the hub has no packages yet' },
    );
  }
  const entry = pkg.versions[ref.version];
  if (!entry) {
    throw new NotFoundError(
      `package ${ref.name} has no version ${ref.version}`,
      { kind: 'package version', name: `${ref.name}@${ref.version}` },
      { hint: `versions: ${Object.keys(pkg.versions).sort().join(', ')}` },
    );
  }
  return entry;
}

/**
 * A published version whose snapshot has this content hash (not "latest",
 * which only repeats one), or null. Ancestors are found by it: a tag names
 * nothing for sure.
 */
export function findByContentHash(
  index: RegistryIndex,
  contentHash: string,
): { name: string; version: string; entry: IndexVersion } | null {
  for (const name of Object.keys(index.packages).sort()) {
    const versions = index.packages[name]!.versions;
    for (const version of Object.keys(versions).sort()) {
      const entry = versions[version]!;
      if (version !== LATEST && entry.content_hash === contentHash) return { name, version, entry };
    }
  }
  return null;
}

/** The index with one version added (and "latest" pointing at it). */
export function withVersion(
  index: RegistryIndex,
  name: string,
  version: string,
  entry: IndexVersion,
  description: string,
): RegistryIndex {
  const pkg = index.packages[name] ?? { description, versions: {} };
  return {
    ...index,
    packages: {
      ...index.packages,
      [name]: {
        description: description || pkg.description,
        versions: { ...pkg.versions, [version]: entry, [LATEST]: { ...entry, version } },
      },
    },
  };
}

export async function readIndexFile(path: string): Promise<RegistryIndex> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return emptyIndex();
    throw err;
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new CorruptError(`${path} is not valid JSON`, path);
  }
  return parseRegistryIndex(value, path);
}

/** Readers see the old index or the new one, never half of one. */
export async function writeIndexFile(path: string, index: RegistryIndex): Promise<void> {
  const temp = `${path}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(temp, JSON.stringify(index, null, 2) + '\n');
  await rename(temp, path);
}

/** Where the index of a hub lives: the URL itself if it names a .json, else <hub>/index.json. */
export function indexUrlFor(hub: string): URL {
  let url: URL;
  try {
    url = new URL(hub);
  } catch {
    throw new InvalidArgumentError(`invalid hub URL ${JSON.stringify(hub)}`, 'hub', {
      hint: 'use http(s)://host[:port][/path]',
    });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new InvalidArgumentError(`hub URL ${hub} is not http(s)`, 'hub');
  }
  if (url.pathname.endsWith('.json')) return url;
  return new URL(INDEX_FILE, url.href.endsWith('/') ? url.href : `${url.href}/`);
}
