/**
 * Query parameters of the admin API, checked before any handler uses them:
 * every name must be one the route declares, given once; integers are plain
 * decimal digits within the declared range; enums are one of their values.
 * Anything else is a 400 naming the parameter, never a value passed on to the
 * store (where `limit=-1e309` used to become a SQLite error and a 500).
 */
import { BadRequestError } from '../errors.ts';

export type QueryRule =
  | { type: 'integer'; min: number; max: number; default: number }
  | { type: 'enum'; values: readonly string[] };

type Parsed<S extends Record<string, QueryRule>> = {
  [K in keyof S]: S[K] extends { type: 'integer' } ? number : string | undefined;
};

const INTEGER = /^-?[0-9]{1,15}$/;

/** @throws BadRequestError { field, value } */
export function parseQuery<S extends Record<string, QueryRule>>(query: URLSearchParams, rules: S): Parsed<S> {
  const out = Object.create(null) as Record<string, string | number | undefined>;
  for (const [name, rule] of Object.entries(rules)) if (rule.type === 'integer') out[name] = rule.default;
  const seen = new Set<string>();
  for (const [name, value] of query) {
    if (!Object.hasOwn(rules, name)) {
      const known = Object.keys(rules);
      throw new BadRequestError(`unknown query parameter ${name}${known.length ? ` (this endpoint takes ${known.join(', ')})` : ' (this endpoint takes none)'}`, { field: name });
    }
    if (seen.has(name)) throw new BadRequestError(`query parameter ${name} given more than once`, { field: name });
    seen.add(name);
    const rule = rules[name]!;
    if (rule.type === 'integer') {
      const n = INTEGER.test(value) ? Number(value) : NaN;
      if (!(n >= rule.min && n <= rule.max)) throw new BadRequestError(`${name} must be an integer from ${rule.min} to ${rule.max}`, { field: name, value });
      out[name] = n;
    } else {
      if (!rule.values.includes(value)) throw new BadRequestError(`${name} must be one of ${rule.values.join(', ')}`, { field: name, value });
      out[name] = value;
    }
  }
  return out as Parsed<S>;
}
