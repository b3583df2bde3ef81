/**
 * MQTT topic names under a configurable prefix (default `upfleet/v1`), one
 * subtree per device: `<prefix>/devices/<deviceId>/<kind>`.
 */
import { ID_PATTERN } from './ids.ts';

export const DEFAULT_PREFIX = 'upfleet/v1';
export const DEVICE_PUBLISHES = ['manifest', 'progress', 'status'] as const;
export const SHARE_GROUP = 'director';

export class Topics {
  constructor(readonly prefix: string = DEFAULT_PREFIX) {
    if (prefix.length === 0 || /[+#]/.test(prefix) || prefix.startsWith('/') || prefix.endsWith('/')) {
      throw new RangeError(`bad MQTT topic prefix ${JSON.stringify(prefix)}`);
    }
  }

  device(deviceId: string, kind: string): string {
    return `${this.prefix}/devices/${deviceId}/${kind}`;
  }

  /** The device subtree `<prefix>/devices/<id>/`. */
  deviceRoot(deviceId: string): string {
    return `${this.prefix}/devices/${deviceId}/`;
  }

  /** The shared subscription the director consumes `kind` with. */
  shared(kind: string): string {
    return `$share/${SHARE_GROUP}/${this.prefix}/devices/+/${kind}`;
  }

  /** `{ deviceId, kind }` of a topic under the prefix, or undefined. */
  parse(topic: string): { deviceId: string; kind: string } | undefined {
    const head = `${this.prefix}/devices/`;
    if (!topic.startsWith(head)) return undefined;
    const rest = topic.slice(head.length).split('/');
    if (rest.length !== 2 || !ID_PATTERN.test(rest[0]!)) return undefined;
    return { deviceId: rest[0]!, kind: rest[1]! };
  }
}
