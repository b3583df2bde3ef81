/**
 * Building blocks of the two servers' OpenAPI 3.1 documents (the director's and the image
 * repository's): the shapes both speak, the typed error and TUF metadata, and the helpers that
 * spell a media type, a schema reference and a set of error responses.
 *
 * Invariants: response schemas close their objects (`additionalProperties: false`) wherever the
 * server's answer is a fixed shape, so a test validating real answers fails when one gains an
 * undocumented field; `Error` leaves only the error's typed fields open (they differ per code).
 * Pure data: no I/O, like the rest of core.
 */

/** A body or response of one media type. */
export const json = (schema: unknown, mediaType = 'application/json') => ({ content: { [mediaType]: { schema } } });

/** A reference to a schema of the document's components. */
export const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });

/** What each error status means, for both servers. */
const ERROR_STATUSES: Record<number, string> = {
  400: 'malformed request: body, parameter or query (BAD_REQUEST and the codes the operation names)',
  401: 'no or malformed credentials',
  403: 'credentials that do not allow this',
  404: 'no such resource (NOT_FOUND)',
  409: 'conflicts with the current state',
  413: 'body over the size limit; the connection is closed after the answer',
  416: 'range outside the file (RANGE_NOT_SATISFIABLE)',
  422: 'well-formed but refused by a rule',
  500: 'internal error (INTERNAL); logged by the server',
  502: 'the image repository answered with something the director refuses (its error code)',
  503: 'unavailable for now, nothing was stored: try again (STORE_UNAVAILABLE, and for manifests VERIFIER_BUSY, VERIFIER_UNAVAILABLE)',
};

/** `{ status: Error response }` for each status. */
export function errorResponses(statuses: readonly number[]): Record<string, unknown> {
  return Object.fromEntries(statuses.map((status) => {
    const description = ERROR_STATUSES[status];
    if (description === undefined) throw new Error(`no description for error status ${status}`);
    return [String(status), { description, ...json(ref('Error')) }];
  }));
}

const hashes = { type: 'object', description: 'hash algorithm -> lowercase hex digest', additionalProperties: { type: 'string', pattern: '^[0-9a-f]+$' } };

/** Schemas both documents include in their components. */
export const SHARED_SCHEMAS = {
  Error: {
    type: 'object', required: ['error'], additionalProperties: false,
    properties: {
      error: {
        type: 'object', required: ['code', 'message'],
        description: 'code and message, plus the typed fields of the error (e.g. field, value, lastCounter, limit)',
        properties: { code: { type: 'string', pattern: '^[A-Z][A-Z0-9_]*$' }, message: { type: 'string' } },
        additionalProperties: true,
      },
    },
  },
  Hashes: hashes,
  SignedMetadata: {
    type: 'object', required: ['signed', 'signatures'], description: 'TUF metadata (specification 1.0): the signed role and its signatures',
    properties: {
      signed: { type: 'object', required: ['_type', 'version', 'expires'], properties: { _type: { type: 'string' }, version: { type: 'integer', minimum: 1 }, expires: { type: 'string' } } },
      signatures: { type: 'array', items: { type: 'object', required: ['keyid', 'sig'], properties: { keyid: { type: 'string' }, sig: { type: 'string' } } } },
    },
  },
  TargetCustom: {
    type: 'object', description: 'target custom fields; the image repository\'s targets carry hardwareIds, releaseCounter and version',
    properties: { hardwareIds: { type: 'array', items: { type: 'string' } }, releaseCounter: { type: 'integer', minimum: 0 }, version: { type: 'string' } },
  },
  Versions: { type: 'object', description: 'role name -> current published version', additionalProperties: { type: 'integer', minimum: 1 } },
  OpenApiDocument: { type: 'object', required: ['openapi', 'info', 'paths'], description: 'this document', properties: { openapi: { const: '3.1.0' } } },
  Metrics: { type: 'string', description: 'Prometheus text exposition' },
};
