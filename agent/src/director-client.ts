/**
 * The director's device API over HTTP (director/README.md): registration with
 * the provisioning token, manifests and progress events with the device token.
 * Metadata downloads go through the repository updater, not through here.
 */
import { DownloadError } from '@upfleet/core';
import { DirectorRequestError } from './errors.ts';
import { httpPost } from './fetcher.ts';
import type { DeviceTokens } from './device-token.ts';
import type { Delivery, OutboxRow } from './outbox.ts';

export interface RegistrationEcu {
  ecuSerial: string;
  hardwareId: string;
  publicKey: Record<string, unknown>;
}

export interface Registration {
  primary: RegistrationEcu;
  secondaries: RegistrationEcu[];
}

export class DirectorClient {
  /** The device's director repository base: `<director>/api/v1/devices/<id>`. */
  readonly deviceBase: string;

  constructor(
    directorUrl: string,
    readonly deviceId: string,
    private readonly tokens: DeviceTokens | undefined,
  ) {
    this.deviceBase = `${directorUrl}/api/v1/devices/${encodeURIComponent(deviceId)}`;
  }

  async #post(path: string, body: unknown, headers: Record<string, string>): Promise<{ status: number; text: string }> {
    const url = `${this.deviceBase}/${path}`;
    try {
      return await httpPost(url, typeof body === 'string' ? body : JSON.stringify(body), headers);
    } catch (cause) {
      throw new DownloadError(`POST ${url}: ${(cause as Error).message}`, { cause });
    }
  }

  /**
   * Registers the device and its ECUs (idempotent on the director's side).
   * @throws DirectorRequestError on refusal, DownloadError on transport failure.
   */
  async register(body: Registration, provisioningToken: string): Promise<{ status: string }> {
    const res = await this.#post('register', body, { authorization: `Bearer ${provisioningToken}` });
    if (res.status !== 200 && res.status !== 201) throw new DirectorRequestError(`${this.deviceBase}/register`, res.status, res.text);
    return JSON.parse(res.text) as { status: string };
  }

  /** Delivers one outbox message over HTTP; classifies the answer for the outbox. */
  async deliver(row: OutboxRow): Promise<Delivery> {
    if (!this.tokens) return { outcome: 'retry', reason: 'no device key' };
    let res: { status: number; text: string };
    try {
      res = await this.#post(row.kind, row.payload, this.tokens.header());
    } catch (e) {
      return { outcome: 'retry', reason: (e as Error).message };
    }
    if (res.status >= 200 && res.status < 300) return { outcome: 'ack' };
    if (res.status === 409 && row.kind === 'manifest') {
      // MANIFEST_REPLAY: accepted earlier when lastCounter >= this counter (a lost response).
      const last = (safeJson(res.text) as { error?: { lastCounter?: number } })?.error?.lastCounter;
      const counter = (safeJson(row.payload) as { signed?: { counter?: number } })?.signed?.counter;
      if (typeof last === 'number' && typeof counter === 'number' && last >= counter) return { outcome: 'ack' };
    }
    if (res.status >= 400 && res.status < 500 && res.status !== 401 && res.status !== 408 && res.status !== 429) {
      return { outcome: 'reject', reason: `HTTP ${res.status} ${res.text.slice(0, 300)}` };
    }
    return { outcome: 'retry', reason: `HTTP ${res.status}` };
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
