/** A role's keyids and signature threshold, as root and delegations list them. */
import { expectInteger, expectObject, expectUniqueStrings, splitFields, type JsonObject } from './guard.ts';

export class Role {
  constructor(
    public keyids: string[],
    public threshold: number,
    public unrecognizedFields: JsonObject = {},
  ) {}

  static fromJSON(json: unknown, path: string): Role {
    const obj = expectObject(json, path);
    return new Role(
      expectUniqueStrings(obj.keyids, `${path}.keyids`),
      expectInteger(obj.threshold, `${path}.threshold`, 1),
      splitFields(obj, ['keyids', 'threshold']),
    );
  }

  toJSON(): JsonObject {
    return { keyids: [...this.keyids], threshold: this.threshold, ...this.unrecognizedFields };
  }
}
