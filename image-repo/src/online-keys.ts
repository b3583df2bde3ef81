/**
 * The online keys (snapshot, timestamp) the server signs with, from
 * DIR/keys/online/ only: the server never lists, opens or decrypts the
 * offline root and targets keys in keys/offline/, and its passphrase (the
 * online one) cannot decrypt them. Key files are found by keyid (their public
 * part is readable without the passphrase) and decrypted once, on first use,
 * then kept in memory: a root rotation that adds an online key works as soon
 * as its key file is in keys/online/, without a restart.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decryptKeyFile, KeyFileError, readPublicKey, type Signer } from '@upfleet/core';
import type { Workspace } from './workspace.ts';

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

/** Key files `keys/online/snapshot-*.key.json` and `keys/online/timestamp-*.key.json`, decrypted on demand. */
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

/**
 * The online passphrase, looked up when first needed and then kept: `explicit` (the CLI passes
 * UPFLEET_ONLINE_PASSPHRASE), else DIR/keys/online/passphrase, which init writes when it
 * generates the passphrase (as upfleet-director does), so a server can start unattended.
 */
export function onlinePassphrase(workspace: Workspace, explicit?: string | (() => string)): () => string {
  let cached: string | undefined;
  return () => {
    if (cached !== undefined) return cached;
    let found: string;
    if (typeof explicit === 'function') found = explicit();
    else if (explicit !== undefined) found = explicit;
    else if (existsSync(workspace.onlinePassphraseFile)) found = readFileSync(workspace.onlinePassphraseFile, 'utf8').trim();
    else throw new KeyFileError(`no online passphrase: set UPFLEET_ONLINE_PASSPHRASE or write ${workspace.onlinePassphraseFile}`);
    if (found === '') throw new KeyFileError('the online passphrase is empty');
    return (cached = found);
  };
}

function safeList(dir: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch {
    return [];
  }
}
