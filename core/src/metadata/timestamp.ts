import { MalformedMetadataError } from '../errors.ts';
import { MetaFile } from './file-info.ts';
import { expectObject, splitFields, type JsonObject } from './guard.ts';
import { COMMON_FIELDS, parseCommon, Signed } from './signed.ts';

export class Timestamp extends Signed {
  readonly type = 'timestamp' as const;

  constructor(version: number, expires: string, public snapshotMeta: MetaFile, specVersion?: string, unrecognizedFields: JsonObject = {}) {
    super(version, expires, specVersion, unrecognizedFields);
  }

  static fromJSON(json: unknown, path = 'timestamp'): Timestamp {
    const obj = expectObject(json, path);
    const { version, expires, specVersion } = parseCommon(obj, 'timestamp', path);
    const meta = expectObject(obj.meta, `${path}.meta`);
    const keys = Object.keys(meta);
    if (keys.length !== 1 || keys[0] !== 'snapshot.json') {
      throw new MalformedMetadataError(`${path}.meta`, 'must list exactly snapshot.json');
    }
    const snapshotMeta = MetaFile.fromJSON(meta['snapshot.json'], `${path}.meta.snapshot.json`);
    return new Timestamp(version, expires, snapshotMeta, specVersion, splitFields(obj, [...COMMON_FIELDS, 'meta']));
  }

  toJSON(): JsonObject {
    return { ...this.commonJSON(), meta: { 'snapshot.json': this.snapshotMeta.toJSON() }, ...this.unrecognizedFields };
  }
}
