import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { encryptKeyFile, decryptKeyFile, readPublicKey } from './key-files.ts';
import { Ed25519Signer } from './keys.ts';
import { KeyFileError } from './errors.ts';
import { fromUtf8, utf8 } from './bytes.ts';

describe('key files', () => {
  const signer = Ed25519Signer.generate();
  const file = encryptKeyFile(signer, 'correct horse');

  describe('decryptKeyFile', () => {
    it('returns the signer with the right passphrase', () => {
      const opened = decryptKeyFile(file, 'correct horse');
      assert.equal(opened.keyid, signer.keyid);
      assert.deepEqual(opened.seed, signer.seed);
    });

    it('does not store the seed in clear', () => {
      const text = fromUtf8(file);
      assert.ok(!text.includes(Buffer.from(signer.seed).toString('hex')));
      assert.ok(!text.includes(Buffer.from(signer.seed).toString('base64')));
    });

    describe('with a wrong passphrase', () => {
      it('throws KeyFileError', () => {
        assert.throws(() => decryptKeyFile(file, 'wrong'), (e: unknown) => e instanceof KeyFileError && /wrong passphrase/.test(e.message));
      });
      it('names the file it could not open', () => {
        assert.throws(() => decryptKeyFile(file, 'wrong', '/keys/targets.key.json'), (e: unknown) => e instanceof KeyFileError && e.message.startsWith('cannot decrypt /keys/targets.key.json:'));
      });
    });

    describe('when the ciphertext is damaged', () => {
      it('throws KeyFileError', () => {
        const json = JSON.parse(fromUtf8(file));
        json.ciphertext = Buffer.from(Buffer.from(json.ciphertext, 'base64').map((b: number) => b ^ 1)).toString('base64');
        assert.throws(() => decryptKeyFile(utf8(JSON.stringify(json)), 'correct horse'), KeyFileError);
      });
    });

    describe('when the public key was swapped', () => {
      it('throws KeyFileError', () => {
        const json = JSON.parse(fromUtf8(file));
        json.key = Ed25519Signer.generate().key.toJSON();
        assert.throws(() => decryptKeyFile(utf8(JSON.stringify(json)), 'correct horse'), (e: unknown) => e instanceof KeyFileError && /does not match/.test(e.message));
      });
    });

    describe('when it is not a key file', () => {
      it('throws KeyFileError', () => {
        assert.throws(() => decryptKeyFile(utf8('{"format":"other"}'), 'x'), KeyFileError);
        assert.throws(() => decryptKeyFile(utf8('not json'), 'x'), KeyFileError);
      });
    });
  });

  describe('readPublicKey', () => {
    it('reads the public key without the passphrase', () => {
      assert.equal(readPublicKey(file).keyid, signer.keyid);
    });
  });
});
