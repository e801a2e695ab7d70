// The one error mapper: a guest's errno decides whose fault a failed call
// was, and only what is left is a 500.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { constants } from 'node:os';
import { toHttpError } from '../../src/daemon/http-errors.js';
import { AgentError, AgentUnavailableError, InvalidArgumentError, TooLargeError } from '../../src/errors.js';

const E = constants.errno;

test('guest errnos map to the caller’s 4xx', () => {
  const status = (errno: number) => toHttpError(new AgentError('x', errno)).status;
  assert.equal(status(E.ENOENT), 404);
  assert.equal(status(E.EACCES), 403);
  assert.equal(status(E.EPERM), 403);
  assert.equal(status(E.ENAMETOOLONG), 400);
  assert.equal(status(E.EINVAL), 400);
  assert.equal(status(E.ENOTEMPTY), 409);
  assert.equal(status(E.EFBIG), 413);
  assert.equal(status(E.ENOSPC), 507);
});

test('a guest that broke the protocol is a 502 with the reason; too large is 413; bad input 400', () => {
  const broken = toHttpError(
    new AgentUnavailableError('the agent broke the protocol: bad frame length 1', 'bad'),
  );
  assert.equal(broken.status, 502);
  assert.match(broken.message, /bad frame length/);
  assert.equal(toHttpError(new TooLargeError('big', 10)).status, 413);
  assert.equal(toHttpError(new InvalidArgumentError('NUL')).status, 400);
  assert.equal(toHttpError(new AgentError('agent channel closed')).status, 500);
});
