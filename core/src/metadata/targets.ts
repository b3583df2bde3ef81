import { Delegations } from './delegations.ts';
import { TargetFile } from './file-info.ts';
import { asNameMap, expectObject, nameMap, splitFields, type JsonObject } from './guard.ts';
import { COMMON_FIELDS, parseCommon, Signed } from './signed.ts';

export class Targets extends Signed {
  readonly type = 'targets' as const;

  constructor(
    version: number,
    expires: string,
    /** Target path -> TargetFile; a nameMap, since paths come from outside. */
    public targets: Record<string, TargetFile> = nameMap(),
    public delegations?: Delegations,
    specVersion?: string,
    unrecognizedFields: JsonObject = {},
  ) {
    super(version, expires, specVersion, unrecognizedFields);
    this.targets = asNameMap(targets);
  }

  static fromJSON(json: unknown, path = 'targets'): Targets {
    const obj = expectObject(json, path);
    const { version, expires, specVersion } = parseCommon(obj, 'targets', path);
    const targetsObj = expectObject(obj.targets, `${path}.targets`);
    const targets = nameMap(Object.entries(targetsObj).map(([name, info]) => [name, TargetFile.fromJSON(info, `${path}.targets.${name}`)]));
    const delegations = obj.delegations === undefined ? undefined : Delegations.fromJSON(obj.delegations, `${path}.delegations`);
    return new Targets(version, expires, targets, delegations, specVersion, splitFields(obj, [...COMMON_FIELDS, 'targets', 'delegations']));
  }

  toJSON(): JsonObject {
    const targets = nameMap(Object.entries(this.targets).map(([name, t]) => [name, t.toJSON()]));
    return {
      ...this.commonJSON(),
      targets,
      ...(this.delegations !== undefined && { delegations: this.delegations.toJSON() }),
      ...this.unrecognizedFields,
    };
  }
}
