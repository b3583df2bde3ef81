/**
 * The device token the director accepts (director/README.md "Device identity"):
 * `<deviceId>:<expires>:<hex ed25519 signature>` over
 * `upfleet-device-token/v1:<deviceId>:<expires>`, signed with the primary key.
 * Tokens are cached and renewed when less than a quarter of their life is left.
 */
import { toHex, utf8, type Signer } from '@upfleet/core';

const LIFETIME_S = 3600;

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
      const message = utf8(`upfleet-device-token/v1:${this.deviceId}:${this.#expires}`);
      this.#token = `${this.deviceId}:${this.#expires}:${toHex(this.signer.sign(message))}`;
    }
    return this.#token;
  }

  header(): Record<string, string> {
    return { authorization: `UpfleetDevice ${this.current()}` };
  }
}
