/**
 * The online keys (snapshot, timestamp) the server signs with. Key files are
 * found by keyid (their public part is readable without the passphrase) and
 * decrypted once, on first use, then kept in memory: a root rotation that adds
 * an online key works as soon as its key file is in `keys/`, without a restart.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decryptKeyFile, readPublicKey, type Signer } from '@upfleet/core';

export interface OnlineKeyring {
  /** Signers for the listed keyids that this keyring holds. */
  signers(keyids: readonly string[]): Signer[];
}

/** A keyring of signers already in memory (tests, in-process demos). */
export class MemoryKeyring implements OnlineKeyring {
  #byId: Map<string, Signer>;
  constructor(signers: readonly Signer[]) {
    this.#byId = new Map(signers.map((s) => [s.key.keyid, s]));
  }
  signers(keyids: readonly string[]): Signer[] {
    return keyids.flatMap((id) => this.#byId.get(id) ?? []);
  }
}

/** Key files `keys/snapshot-*.key.json` and `keys/timestamp-*.key.json`, decrypted on demand. */
export class KeyDirKeyring implements OnlineKeyring {
  #cache = new Map<string, Signer>();

  constructor(
    readonly keysDir: string,
    private readonly passphrase: () => string,
  ) {}

  signers(keyids: readonly string[]): Signer[] {
    const missing = keyids.filter((id) => !this.#cache.has(id));
    if (missing.length > 0) {
      for (const name of safeList(this.keysDir)) {
        if (!/^(snapshot|timestamp)-.*\.key\.json$/.test(name)) continue;
        const bytes = readFileSync(join(this.keysDir, name));
        const keyid = readPublicKey(bytes).keyid;
        if (missing.includes(keyid) && !this.#cache.has(keyid)) this.#cache.set(keyid, decryptKeyFile(bytes, this.passphrase(), join(this.keysDir, name)));
      }
    }
    return keyids.flatMap((id) => this.#cache.get(id) ?? []);
  }
}

function safeList(dir: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch {
    return [];
  }
}
