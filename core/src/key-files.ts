/**
 * Private keys at rest: an ed25519 seed encrypted with a passphrase
 * (scrypt key derivation, AES-256-GCM). Returns and takes bytes; the caller
 * does the file I/O. A wrong passphrase and a damaged file both fail the
 * GCM tag check and raise KeyFileError; nothing is ever half-decrypted.
 */
import { createCipheriv, createDecipheriv, randomBytes, scryptSync } from 'node:crypto';
import { Ed25519Signer, Key } from './keys.ts';
import { fromUtf8, utf8 } from './bytes.ts';
import { KeyFileError } from './errors.ts';

const FORMAT = 'upfleet-encrypted-key/1';
const SCRYPT = { N: 1 << 15, r: 8, p: 1 };

interface EncryptedKeyFile {
  format: typeof FORMAT;
  key: Record<string, unknown>;
  kdf: { name: 'scrypt'; salt: string; N: number; r: number; p: number };
  cipher: { name: 'aes-256-gcm'; iv: string; tag: string };
  ciphertext: string;
}

function deriveKey(passphrase: string, salt: Buffer, params: { N: number; r: number; p: number }): Buffer {
  return scryptSync(passphrase, salt, 32, { ...params, maxmem: 256 * params.N * params.r });
}

/**
 * Encrypts a signer's seed; the public key stays readable in the file.
 * `scryptN` lowers the key derivation cost (default 2^15, about 0.1-0.3 s here) for
 * simulators that make thousands of throw-away device keys; real keys keep the default.
 */
export function encryptKeyFile(signer: Ed25519Signer, passphrase: string, options: { scryptN?: number } = {}): Uint8Array {
  const salt = randomBytes(16);
  const iv = randomBytes(12);
  const params = { ...SCRYPT, ...(options.scryptN !== undefined && { N: options.scryptN }) };
  const cipher = createCipheriv('aes-256-gcm', deriveKey(passphrase, salt, params), iv);
  const ciphertext = Buffer.concat([cipher.update(signer.seed), cipher.final()]);
  const file: EncryptedKeyFile = {
    format: FORMAT,
    key: signer.key.toJSON(),
    kdf: { name: 'scrypt', salt: salt.toString('base64'), ...params },
    cipher: { name: 'aes-256-gcm', iv: iv.toString('base64'), tag: cipher.getAuthTag().toString('base64') },
    ciphertext: ciphertext.toString('base64'),
  };
  return utf8(JSON.stringify(file, null, 2) + '\n');
}

function parseKeyFile(bytes: Uint8Array): EncryptedKeyFile {
  let json: unknown;
  try {
    json = JSON.parse(fromUtf8(bytes));
  } catch (cause) {
    throw new KeyFileError('not a key file: invalid JSON', { cause });
  }
  const f = json as Partial<EncryptedKeyFile>;
  if (f?.format !== FORMAT || f.kdf?.name !== 'scrypt' || f.cipher?.name !== 'aes-256-gcm' || typeof f.ciphertext !== 'string') {
    throw new KeyFileError(`not an ${FORMAT} key file`);
  }
  return f as EncryptedKeyFile;
}

/** The public key, readable without the passphrase. @throws KeyFileError */
export function readPublicKey(bytes: Uint8Array): Key {
  try {
    return Key.fromJSON(parseKeyFile(bytes).key);
  } catch (cause) {
    if (cause instanceof KeyFileError) throw cause;
    throw new KeyFileError('damaged key file: bad public key', { cause });
  }
}

/**
 * @param source names the file in errors (operators often hold several key files).
 * @throws KeyFileError on a wrong passphrase, a damaged file or a key mismatch.
 */
export function decryptKeyFile(bytes: Uint8Array, passphrase: string, source = 'key file'): Ed25519Signer {
  const file = parseKeyFile(bytes);
  let seed: Buffer;
  try {
    const { N, r, p } = file.kdf;
    const decipher = createDecipheriv(
      'aes-256-gcm',
      deriveKey(passphrase, Buffer.from(file.kdf.salt, 'base64'), { N, r, p }),
      Buffer.from(file.cipher.iv, 'base64'),
    );
    decipher.setAuthTag(Buffer.from(file.cipher.tag, 'base64'));
    seed = Buffer.concat([decipher.update(Buffer.from(file.ciphertext, 'base64')), decipher.final()]);
  } catch (cause) {
    throw new KeyFileError(`cannot decrypt ${source}: wrong passphrase or damaged file`, { cause });
  }
  const signer = Ed25519Signer.fromSeed(new Uint8Array(seed));
  if (signer.key.keyid !== readPublicKey(bytes).keyid) {
    throw new KeyFileError(`${source}: its public key does not match its private key`);
  }
  return signer;
}
