import { MetaFile } from './file-info.ts';
import { asNameMap, expectObject, nameMap, splitFields, type JsonObject } from './guard.ts';
import { COMMON_FIELDS, parseCommon, Signed } from './signed.ts';

export class Snapshot extends Signed {
  readonly type = 'snapshot' as const;

  /** `<role>.json` -> MetaFile, for targets and every delegated role (a nameMap: role names come from outside). */
  constructor(version: number, expires: string, public meta: Record<string, MetaFile>, specVersion?: string, unrecognizedFields: JsonObject = {}) {
    super(version, expires, specVersion, unrecognizedFields);
    this.meta = asNameMap(meta);
  }

  static fromJSON(json: unknown, path = 'snapshot'): Snapshot {
    const obj = expectObject(json, path);
    const { version, expires, specVersion } = parseCommon(obj, 'snapshot', path);
    const metaObj = expectObject(obj.meta, `${path}.meta`);
    const meta = nameMap(Object.entries(metaObj).map(([name, info]) => [name, MetaFile.fromJSON(info, `${path}.meta.${name}`)]));
    return new Snapshot(version, expires, meta, specVersion, splitFields(obj, [...COMMON_FIELDS, 'meta']));
  }

  toJSON(): JsonObject {
    const meta = nameMap(Object.entries(this.meta).map(([n, m]) => [n, m.toJSON()]));
    return { ...this.commonJSON(), meta, ...this.unrecognizedFields };
  }
}
