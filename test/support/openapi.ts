/**
 * Checks the servers' OpenAPI 3.1 documents hold: against the OpenAPI 3.1 schema
 * (@seriousme/openapi-schema-validator), against the routes a server registers, and against
 * the answers a real server gives (ajv, JSON Schema 2020-12, the dialect of OpenAPI 3.1).
 *
 * `ResponseChecker.check` finds the operation a request went to by the document's path
 * templates, and fails when the operation, the status or the media type is undocumented or
 * the body does not match the schema; it records which operations and statuses it saw, so a
 * test can assert what it covered.
 */
import assert from 'node:assert/strict';
import { Validator } from '@seriousme/openapi-schema-validator';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';

// ajv-formats is CommonJS with a default export that TypeScript sees one level down.
const addFormats = addFormatsModule as unknown as (ajv: Ajv2020) => Ajv2020;

type Doc = Record<string, any>;

export const HTTP_METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'] as const;

/** Throws with every finding when the document is not valid OpenAPI 3.1. */
export async function assertValidOpenApi31(doc: Doc): Promise<void> {
  assert.equal(doc.openapi, '3.1.0');
  const result = await new Validator().validate(structuredClone(doc));
  assert.ok(result.valid, `not a valid OpenAPI 3.1 document:\n${JSON.stringify(result.errors, null, 2)}`);
}

/** `METHOD path` of every operation of the document, sorted. */
export function operationsOf(doc: Doc): string[] {
  const out: string[] = [];
  for (const [path, item] of Object.entries(doc.paths as Record<string, Record<string, unknown>>)) {
    for (const method of HTTP_METHODS) if (item[method]) out.push(`${method.toUpperCase()} ${path}`);
  }
  return out.sort();
}

const pointer = (...parts: string[]) => parts.map((p) => p.replaceAll('~', '~0').replaceAll('/', '~1')).join('/');

export class ResponseChecker {
  readonly #ajv: Ajv2020;
  readonly #templates: Array<{ path: string; exact: RegExp; rest: RegExp }>;
  readonly #validators = new Map<string, ValidateFunction>();
  /** `METHOD path status` of every answer checked. */
  readonly seen = new Set<string>();

  constructor(private readonly doc: Doc) {
    this.#ajv = new Ajv2020({ strict: true, strictTypes: false, strictRequired: false, allErrors: true });
    addFormats(this.#ajv);
    // The components as one schema resource (their refs rewritten to its $defs), so the
    // response schemas, compiled one by one, can refer to them.
    this.#ajv.addSchema({ $id: COMPONENTS_ID, $defs: rebase(doc.components.schemas) as object });
    this.#templates = Object.keys(doc.paths).map((path) => {
      const src = (param: string) => `^${path.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{\w+\}/g, () => param)}$`;
      // Path parameters are one segment; the last may hold `/` (a target name) when nothing matches otherwise.
      return { path, exact: new RegExp(src('[^/]+')), rest: new RegExp(src('.+')) };
    });
  }

  /** The template a request path was served by: a one-segment match first, else a trailing parameter with `/`. */
  templateOf(pathname: string): string {
    const found = this.#templates.find((t) => t.exact.test(pathname)) ?? this.#templates.find((t) => t.rest.test(pathname));
    assert.ok(found, `no documented path for ${pathname}`);
    return found.path;
  }

  /**
   * Asserts the answer is documented: operation, status, media type, and body against its schema.
   * @param body the parsed JSON body, the text of a text answer, or undefined when there was none.
   */
  check(method: string, pathname: string, status: number, contentType: string | null, body: unknown): void {
    const path = this.templateOf(pathname);
    const m = method.toLowerCase();
    const operation = this.doc.paths[path][m];
    assert.ok(operation, `${method} ${path} is not documented`);
    let response = operation.responses[String(status)];
    assert.ok(response, `${method} ${path} answered ${status}, which is not documented (${Object.keys(operation.responses).join(', ')}): ${JSON.stringify(body)}`);
    let responsePointer = `#/paths/${pointer(path, m, 'responses', String(status))}`;
    if (response.$ref) {
      responsePointer = response.$ref;
      response = responsePointer.slice(2).split('/').reduce((o: Doc, k: string) => o[k.replaceAll('~1', '/').replaceAll('~0', '~')], this.doc);
    }
    this.seen.add(`${method.toUpperCase()} ${path} ${status}`);
    if (!response.content || m === 'head' || status === 304) {
      assert.ok(body === undefined || body === '', `${method} ${path} ${status} is documented without a body, but has one: ${JSON.stringify(body)}`);
      return;
    }
    const mediaType = (contentType ?? '').split(';')[0]!.trim();
    const media = response.content[mediaType];
    assert.ok(media, `${method} ${path} ${status}: media type ${mediaType} is not documented (${Object.keys(response.content).join(', ')})`);
    if (!media.schema) return;
    const validate = this.#validator(`${responsePointer}/${pointer('content', mediaType, 'schema')}`, media.schema);
    assert.ok(validate(body), `${method} ${pathname} ${status} does not match its documented schema:\n${JSON.stringify(validate.errors, null, 2)}\nbody: ${JSON.stringify(body).slice(0, 2000)}`);
  }

  /** Response schemas live outside `components`: each is compiled with the components beside it. */
  #validator(key: string, schema: unknown): ValidateFunction {
    let v = this.#validators.get(key);
    if (!v) {
      v = this.#ajv.compile(rebase(schema) as object);
      this.#validators.set(key, v);
    }
    return v;
  }

  /** Every schema of the components compiles under strict ajv (no unknown keywords, no unresolved refs). */
  compileAll(): void {
    for (const name of Object.keys(this.doc.components.schemas)) assert.ok(this.#ajv.getSchema(`${COMPONENTS_ID}#/$defs/${name}`), `schema ${name} does not compile`);
  }
}

const COMPONENTS_ID = 'openapi-components.json';

/** Points `#/components/schemas/X` refs at the components resource. */
function rebase(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(rebase);
  if (typeof schema !== 'object' || schema === null) return schema;
  return Object.fromEntries(Object.entries(schema).map(([k, v]) => {
    if (k !== '$ref' || typeof v !== 'string') return [k, rebase(v)];
    const m = /^#\/components\/schemas\/(.+)$/.exec(v);
    assert.ok(m, `unexpected $ref ${v}`);
    return [k, `${COMPONENTS_ID}#/$defs/${m[1]}`];
  }));
}

/** A fetch that checks every answer from `origin` against the document (other origins pass unchecked). */
export function checkingFetch(checker: ResponseChecker, origin: string, inner: typeof fetch = globalThis.fetch): typeof fetch {
  return async (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const method = (init?.method ?? (input instanceof Request ? input.method : 'GET')).toUpperCase();
    const res = await inner(input, init);
    if (url.origin === new URL(origin).origin) {
      const { body, type } = await bodyOf(res.clone());
      checker.check(method, url.pathname, res.status, type, body);
    }
    return res;
  };
}

/** Fetches and checks the answer against the document; returns status and parsed body. */
export async function checkedFetch(checker: ResponseChecker, base: string, method: string, path: string, init: { headers?: Record<string, string>; body?: string | Uint8Array } = {}): Promise<{ status: number; body: any; headers: Headers }> {
  const res = await checkingFetch(checker, base)(`${base}${path}`, { method, headers: init.headers, body: init.body });
  return { status: res.status, body: (await bodyOf(res)).body, headers: res.headers };
}

/** The body: parsed JSON for a JSON answer, else the text; undefined when empty. */
async function bodyOf(res: Response): Promise<{ body: unknown; type: string | null }> {
  const text = await res.text();
  const type = res.headers.get('content-type');
  return { body: text === '' ? undefined : type?.startsWith('application/json') ? JSON.parse(text) : text, type };
}
