/**
 * What the verify pool and its workers exchange: jobs, answers, and refusals as
 * plain data that structured clone keeps, turned back into the same typed
 * errors on the main thread.
 */
import { ForbiddenError, ManifestRejectedError, NotFoundError } from './errors.ts';
import type { CheckedManifest, CheckView } from './manifest-checks.ts';

export interface Job {
  id: number;
  deviceId: string;
  bytes: Uint8Array;
  view: CheckView;
}

export type WireError =
  | { type: 'manifest'; deviceId: string; code: string; detail: string; fields: Record<string, unknown>; status: number }
  | { type: 'forbidden'; code: string; message: string; fields: Record<string, unknown> }
  | { type: 'not-found'; kind: string; id: string }
  | { type: 'other'; name: string; message: string };

export type Answer = { id: number; ok: true; checked: CheckedManifest } | { id: number; ok: false; error: WireError };

export function toWire(error: unknown): WireError {
  if (error instanceof ManifestRejectedError) {
    const prefix = `manifest of ${error.deviceId} refused: `;
    const { deviceId: _d, ...fields } = error.fields;
    return { type: 'manifest', deviceId: error.deviceId, code: error.code, detail: error.message.slice(prefix.length), fields, status: error.status };
  }
  if (error instanceof ForbiddenError) return { type: 'forbidden', code: error.code, message: error.message, fields: error.fields };
  if (error instanceof NotFoundError) return { type: 'not-found', kind: error.kind, id: error.id };
  const e = error as Error;
  return { type: 'other', name: e?.name ?? 'Error', message: e?.message ?? String(error) };
}

export function fromWire(w: WireError): Error {
  switch (w.type) {
    case 'manifest': return new ManifestRejectedError(w.deviceId, w.code, w.detail, w.fields, w.status);
    case 'forbidden': return new ForbiddenError(w.code, w.message, w.fields);
    case 'not-found': return new NotFoundError(w.kind, w.id);
    default: return Object.assign(new Error(`verify worker: ${w.message}`), { name: w.name });
  }
}
