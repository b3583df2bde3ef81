/**
 * Names that end up in URLs and in the clients' file systems. A target name
 * is a `/`-separated path of plain segments; no segment may be empty, `.`,
 * `..`, or contain anything but letters, digits and `._+-`. Role names are one
 * such segment. Checking here, once, means no later code has to think about
 * path traversal.
 */
import { TOP_LEVEL_ROLES } from '@upfleet/core';
import { BadNameError } from './errors.ts';

const SEGMENT = /^[A-Za-z0-9_+-][A-Za-z0-9._+-]*$/;
const MAX_NAME = 255;

/** @throws BadNameError */
export function checkTargetName(name: string): string {
  if (name.length === 0 || name.length > MAX_NAME) throw new BadNameError('target', name, `length must be 1..${MAX_NAME}`);
  for (const segment of name.split('/')) {
    if (segment === '' || segment === '.' || segment === '..') throw new BadNameError('target', name, 'empty, "." or ".." path segment');
    if (!SEGMENT.test(segment)) throw new BadNameError('target', name, 'segments may hold only letters, digits and ._+-');
  }
  return name;
}

/** @throws BadNameError */
export function checkRoleName(name: string): string {
  if (name.length === 0 || name.length > 64 || !SEGMENT.test(name) || name.includes('..')) {
    throw new BadNameError('role', name, 'use 1..64 letters, digits and ._+-');
  }
  if ((TOP_LEVEL_ROLES as readonly string[]).includes(name)) throw new BadNameError('role', name, 'is a top-level role');
  return name;
}
