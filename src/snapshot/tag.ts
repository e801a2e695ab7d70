// The tag rule. A tag becomes a directory name, so it is checked before any
// path is built from it, everywhere a tag enters forkd.
import { InvalidArgumentError } from '../errors.js';

export const TAG_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

export function isValidTag(tag: unknown): tag is string {
  return typeof tag === 'string' && TAG_PATTERN.test(tag);
}

export function assertValidTag(tag: unknown, argument = 'tag'): string {
  if (!isValidTag(tag)) {
    const shown =
      typeof tag === 'string' ? JSON.stringify(tag.length > 80 ? `${tag.slice(0, 80)}…` : tag) : String(tag);
    throw new InvalidArgumentError(`invalid ${argument} ${shown}`, argument, {
      hint: 'use 1-64 characters from A-Z a-z 0-9 _ -',
    });
  }
  return tag;
}
