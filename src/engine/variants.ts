// The variants of a time-travel fork: what each of k children is handed
// before it runs, from either spelling the API takes (`{name: [v1 … vk]}` or
// `[{…} × k]`), checked once here. A child gets its variant as environment
// variables for later execs, as /run/forkd/vary.json (which the warm runtimes
// bind as variables), and as FORKD_VARY (the JSON).
import { InvalidArgumentError } from '../errors.js';

/** One child's variant: its values by name (any JSON). */
export type Variant = Readonly<Record<string, unknown>>;
/** `{name: [v1 … vk]}` (one list per name) or one object per child. */
export type VarySpec = Readonly<Record<string, readonly unknown[]>> | ReadonlyArray<Variant>;

/** Most children one fork of a running sandbox makes (E2B's fork caps its count at 100 too). */
export const MAX_FORK_K = 100;
/** Bytes of one variant as JSON: it travels in one agent frame and sits in every exec's environment. */
export const MAX_VARIANT_BYTES = 32 * 1024;
/** A variant name is an environment variable name (and so an identifier in both runtimes). */
const NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
/** Where the guest finds its variant (guest/runtime/*_runtime.* read it on their first eval). */
export const VARY_FILE = '/run/forkd/vary.json';
/** Present when the child's egress lets it reach a network (guest/runtime/browser.js reads it). */
export const NETWORK_FILE = '/run/forkd/network';

function bad(message: string, hint?: string): InvalidArgumentError {
  return new InvalidArgumentError(message, 'vary', hint ? { hint } : {});
}

export function checkForkCount(k: unknown): number {
  if (typeof k !== 'number' || !Number.isInteger(k) || k < 1 || k > MAX_FORK_K) {
    throw new InvalidArgumentError(`k must be an integer from 1 to ${MAX_FORK_K}, got ${String(k)}`, 'k');
  }
  return k;
}

function checkVariant(variant: unknown, where: string): Variant {
  if (variant === null || typeof variant !== 'object' || Array.isArray(variant)) {
    throw bad(`${where} must be an object of name → value`);
  }
  for (const name of Object.keys(variant)) {
    if (!NAME.test(name)) {
      throw bad(
        `vary name ${JSON.stringify(name)} is not usable as an environment variable`,
        'use letters, digits and _ (not starting with a digit), e.g. temperature or SEED',
      );
    }
    if (name.startsWith('FORKD_')) throw bad(`vary name ${name}: the FORKD_ prefix is forkd's own`);
  }
  const bytes = Buffer.byteLength(JSON.stringify(variant));
  if (bytes > MAX_VARIANT_BYTES) {
    throw bad(`${where} is ${bytes} bytes as JSON, over ${MAX_VARIANT_BYTES}`, 'pass large inputs as files');
  }
  return variant as Variant;
}

/** The k variants of `spec` (none given: k empty variants), or a one-line InvalidArgumentError. */
export function variantsFor(k: number, spec: VarySpec | undefined): Variant[] {
  checkForkCount(k);
  if (spec === undefined) return Array.from({ length: k }, () => ({}));
  if (Array.isArray(spec)) {
    if (spec.length !== k) throw bad(`vary has ${spec.length} variants for k = ${k} children`);
    return spec.map((v, i) => checkVariant(v, `vary[${i}]`));
  }
  if (spec === null || typeof spec !== 'object')
    throw bad('vary must be {name: [one value per child]} or a list of k objects');
  const lists = Object.entries(spec as Record<string, unknown>);
  for (const [name, values] of lists) {
    if (!Array.isArray(values)) throw bad(`vary.${name} must be a list of ${k} values, one per child`);
    if (values.length !== k) throw bad(`vary.${name} has ${values.length} values for k = ${k} children`);
  }
  return Array.from({ length: k }, (_, i) =>
    checkVariant(
      Object.fromEntries(lists.map(([name, values]) => [name, (values as unknown[])[i]])),
      `the variant of child ${i}`,
    ),
  );
}

/** A variant as environment variables: strings as they are, anything else as JSON. */
export function variantEnv(variant: Variant): Record<string, string> {
  return Object.fromEntries(
    Object.entries(variant).map(([name, value]) => [
      name,
      typeof value === 'string' ? value : (JSON.stringify(value) ?? 'null'),
    ]),
  );
}
