/**
 * The agent's device tokens (format in core's uptane/device-token.ts), signed with
 * the primary key, cached, and renewed when less than a quarter of their life is left.
 */
import { signDeviceToken, TOKEN_MAX_LIFETIME_S as LIFETIME_S, type Signer } from '@upfleet/core';

export class DeviceTokens {
  #token = '';
  #expires = 0;

  constructor(
    private readonly deviceId: string,
    private readonly signer: Signer,
    private readonly nowSeconds: () => number = () => Math.floor(Date.now() / 1000),
  ) {}

  current(): string {
    const now = this.nowSeconds();
    if (this.#expires - now < LIFETIME_S / 4) {
      this.#expires = now + LIFETIME_S;
      this.#token = signDeviceToken(this.deviceId, this.signer, this.#expires);
    }
    return this.#token;
  }

  header(): Record<string, string> {
    return { authorization: `UpfleetDevice ${this.current()}` };
  }
}
