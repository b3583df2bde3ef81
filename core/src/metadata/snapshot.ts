import { MetaFile } from './file-info.ts';
import { expectObject, splitFields, type JsonObject } from './guard.ts';
import { COMMON_FIELDS, parseCommon, Signed } from './signed.ts';

export class Snapshot extends Signed {
  readonly type = 'snapshot' as const;

  /** `<role>.json` -> MetaFile, for targets and every delegated role. */
  constructor(version: number, expires: string, public meta: Record<string, MetaFile>, specVersion?: string, unrecognizedFields: JsonObject = {}) {
    super(version, expires, specVersion, unrecognizedFields);
  }

  static fromJSON(json: unknown, path = 'snapshot'): Snapshot {
    const obj = expectObject(json, path);
    const { version, expires, specVersion } = parseCommon(obj, 'snapshot', path);
    const metaObj = expectObject(obj.meta, `${path}.meta`);
    const meta: Record<string, MetaFile> = {};
    for (const [name, info] of Object.entries(metaObj)) meta[name] = MetaFile.fromJSON(info, `${path}.meta.${name}`);
    return new Snapshot(version, expires, meta, specVersion, splitFields(obj, [...COMMON_FIELDS, 'meta']));
  }

  toJSON(): JsonObject {
    const meta = Object.fromEntries(Object.entries(this.meta).map(([n, m]) => [n, m.toJSON()]));
    return { ...this.commonJSON(), meta, ...this.unrecognizedFields };
  }
}
