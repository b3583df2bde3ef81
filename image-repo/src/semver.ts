/**
 * A strict check of Semantic Versioning 2.0.0 (https://semver.org/spec/v2.0.0.html):
 * MAJOR.MINOR.PATCH, then an optional `-` pre-release and `+` build metadata,
 * each a `.`-separated list of non-empty [0-9A-Za-z-] identifiers. Numbers
 * carry no leading zeros (rule 2), nor do numeric pre-release identifiers
 * (rule 9); build identifiers may (rule 10). No `v` prefix, no spaces.
 */
import { InvalidVersionError } from './errors.ts';

const NUMBER = /^(0|[1-9][0-9]*)$/;
const IDENTIFIER = /^[0-9A-Za-z-]+$/;
/** Long enough for any real version; a version is signed into every targets file. */
const MAX_LENGTH = 256;

/** The reason `value` is not a SemVer 2.0.0 version, or undefined when it is one. */
export function semverProblem(value: string): string | undefined {
  if (value.length > MAX_LENGTH) return `longer than ${MAX_LENGTH} characters`;
  const plus = value.indexOf('+');
  const build = plus >= 0 ? value.slice(plus + 1) : undefined;
  const beforeBuild = plus >= 0 ? value.slice(0, plus) : value;
  const dash = beforeBuild.indexOf('-');
  const pre = dash >= 0 ? beforeBuild.slice(dash + 1) : undefined;
  const core = dash >= 0 ? beforeBuild.slice(0, dash) : beforeBuild;

  const parts = core.split('.');
  if (parts.length !== 3) return 'expected MAJOR.MINOR.PATCH, e.g. 1.4.0';
  for (const part of parts) {
    if (!NUMBER.test(part)) return `${JSON.stringify(part)} is not a number without leading zeros`;
    if (!Number.isSafeInteger(Number(part))) return `${part} is too large`;
  }
  if (pre !== undefined) {
    for (const id of pre.split('.')) {
      if (!IDENTIFIER.test(id)) return `pre-release identifier ${JSON.stringify(id)} must be non-empty [0-9A-Za-z-]`;
      if (/^[0-9]+$/.test(id) && !NUMBER.test(id)) return `numeric pre-release identifier ${id} has a leading zero`;
    }
  }
  if (build !== undefined) {
    for (const id of build.split('.')) {
      if (!IDENTIFIER.test(id)) return `build identifier ${JSON.stringify(id)} must be non-empty [0-9A-Za-z-]`;
    }
  }
  return undefined;
}

/** @throws InvalidVersionError when `value` is not a SemVer 2.0.0 version */
export function checkSemver(value: string): string {
  const problem = semverProblem(value);
  if (problem !== undefined) throw new InvalidVersionError(value, problem);
  return value;
}
