// Egress policies: what a sandbox's guest may connect to. `none` (the
// default) reaches nothing; `internet` reaches public addresses only, never
// the host, private, link-local, CGNAT or metadata ranges. Parsed from the
// one spelling the CLI, the API and the SDK share: `none`, `internet`, or
// `allow:<rule>,<rule>` where a rule is a CIDR or a domain (`*.` wildcard).
import { isIPv4, isIPv6 } from 'node:net';
import { InvalidArgumentError } from '../errors.js';

export type EgressPolicy =
  | { mode: 'none' }
  | { mode: 'internet' }
  | { mode: 'allow'; cidrs: readonly string[]; domains: readonly string[] };

export const DEFAULT_EGRESS: EgressPolicy = { mode: 'none' };

const DOMAIN = /^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

function badPolicy(spec: string, why: string): InvalidArgumentError {
  return new InvalidArgumentError(`invalid egress policy ${JSON.stringify(spec)}: ${why}`, 'egress', {
    hint: 'use none, internet, or allow:<domain|cidr>[,…] (e.g. allow:pypi.org,*.github.com,203.0.113.0/24)',
  });
}

/** A CIDR in canonical form (`10.0.0.0/8`, `2001:db8::/32`); a bare address gets its full prefix. */
export function parseCidr(text: string): string | null {
  const [address = '', prefixText, ...rest] = text.split('/');
  if (rest.length > 0) return null;
  const bits = isIPv4(address) ? 32 : isIPv6(address) ? 128 : 0;
  if (bits === 0) return null;
  const prefix = prefixText === undefined ? bits : Number(prefixText);
  if (!/^\d{1,3}$/.test(prefixText ?? String(bits)) || prefix > bits) return null;
  return `${address.toLowerCase()}/${prefix}`;
}

export function parseEgress(spec: string): EgressPolicy {
  const text = spec.trim();
  if (text === 'none') return { mode: 'none' };
  if (text === 'internet') return { mode: 'internet' };
  if (!text.startsWith('allow:')) throw badPolicy(spec, 'unknown policy');
  const rules = text
    .slice('allow:'.length)
    .split(',')
    .map((r) => r.trim())
    .filter((r) => r !== '');
  if (rules.length === 0) throw badPolicy(spec, 'the allow-list is empty');
  if (rules.length > 256) throw badPolicy(spec, 'more than 256 rules');
  const cidrs: string[] = [];
  const domains: string[] = [];
  for (const rule of rules) {
    const cidr = parseCidr(rule);
    if (cidr) cidrs.push(cidr);
    else if (rule.length <= 253 && DOMAIN.test(rule.toLowerCase())) domains.push(rule.toLowerCase());
    else throw badPolicy(spec, `${JSON.stringify(rule)} is neither a domain nor a CIDR`);
  }
  return { mode: 'allow', cidrs, domains };
}

export function formatEgress(policy: EgressPolicy): string {
  if (policy.mode !== 'allow') return policy.mode;
  return `allow:${[...policy.domains, ...policy.cidrs].join(',')}`;
}

/** Whether the guest's traffic leaves QEMU at all (its user network is otherwise restrict=on, in an empty netns). */
export function needsHostNetwork(policy: EgressPolicy): boolean {
  return policy.mode !== 'none';
}
