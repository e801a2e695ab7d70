import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidArgumentError } from '../../src/errors.js';
import { formatEgress, parseCidr, parseEgress } from '../../src/engine/egress.js';
import { policyElements } from '../../src/engine/egress-firewall.js';

test('egress policies parse from the one spelling the CLI, API and SDK share, and print back the same', () => {
  assert.deepEqual(parseEgress('none'), { mode: 'none' });
  assert.deepEqual(parseEgress('internet'), { mode: 'internet' });
  const allow = parseEgress('allow:PyPI.org, *.github.com,203.0.113.0/24,2001:db8::/32,198.51.100.7');
  assert.deepEqual(allow, {
    mode: 'allow',
    domains: ['pypi.org', '*.github.com'],
    cidrs: ['203.0.113.0/24', '2001:db8::/32', '198.51.100.7/32'],
  });
  assert.equal(
    formatEgress(allow),
    'allow:pypi.org,*.github.com,203.0.113.0/24,2001:db8::/32,198.51.100.7/32',
  );
});

test('bad policies are InvalidArgumentErrors that say what to write instead', () => {
  for (const bad of [
    '',
    'all',
    'allow:',
    'allow:10.0.0.0/33',
    'allow:a..b',
    'allow:-x.com',
    'allow:1.2.3.4/8/1',
  ]) {
    assert.throws(
      () => parseEgress(bad),
      (err: Error) => err instanceof InvalidArgumentError && /invalid egress policy/.test(err.message),
      bad,
    );
  }
  assert.equal(parseCidr('300.1.1.1/8'), null);
});

test('a policy becomes firewall elements for its uid only; none has none', () => {
  assert.deepEqual(policyElements('add', 7, { mode: 'none' }), []);
  assert.deepEqual(policyElements('add', 7, { mode: 'internet' }), [
    'add element inet forkd network_uids { 7 }',
    'add element inet forkd internet_uids { 7 }',
  ]);
  assert.deepEqual(policyElements('delete', 7, parseEgress('allow:203.0.113.0/24,2001:db8::/32')), [
    'delete element inet forkd network_uids { 7 }',
    'delete element inet forkd allow4 { 7 . 203.0.113.0/24 }',
    'delete element inet forkd allow6 { 7 . 2001:db8::/32 }',
  ]);
});
