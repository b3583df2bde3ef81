/**
 * The director's device API over HTTP (director/README.md): registration with
 * the provisioning token, manifests and progress events with the device token.
 * Metadata downloads go through the repository updater, not through here.
 */
import { DirectorRequestError } from './errors.ts';
import type { HttpFetcher } from './fetcher.ts';
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
    /** The agent's guarded transport: answers capped, deadline and minimum rate enforced. */
    private readonly transport: HttpFetcher,
  ) {
    this.deviceBase = `${directorUrl}/api/v1/devices/${encodeURIComponent(deviceId)}`;
  }

  #post(path: string, body: unknown, headers: Record<string, string>): Promise<{ status: number; text: string }> {
    return this.transport.post(`${this.deviceBase}/${path}`, typeof body === 'string' ? body : JSON.stringify(body), headers);
  }

  /**
   * Registers the device and its ECUs (idempotent on the director's side).
   * @throws DirectorRequestError on refusal or an answer that is not `{ status }`,
   *   DownloadError (LengthLimitError, SlowRetrievalError...) on transport failure.
   */
  async register(body: Registration, provisioningToken: string): Promise<{ status: string }> {
    const res = await this.#post('register', body, { authorization: `Bearer ${provisioningToken}` });
    const answer = safeJson(res.text) as { status?: unknown } | undefined;
    if ((res.status !== 200 && res.status !== 201) || typeof answer?.status !== 'string') {
      throw new DirectorRequestError(`${this.deviceBase}/register`, res.status, res.text);
    }
    return { status: answer.status };
  }

  /** Delivers one outbox message over HTTP; classifies the answer for the outbox. */
  async deliver(row: OutboxRow): Promise<Delivery> {
    if (!this.tokens) return { outcome: 'retry', reason: 'no device key' };
    let res: { status: number; text: string };
    try {
      res = await this.#post(row.kind, row.payload, this.tokens.header());
    } catch (e) {
      return { outcome: 'retry', reason: `${(e as Error).name}: ${(e as Error).message}`, error: e as Error };
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
