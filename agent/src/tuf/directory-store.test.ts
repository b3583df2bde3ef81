import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DirectoryMetadataStore } from './directory-store.ts';
import { UsageError } from '@upfleet/core/errors.ts';

describe('DirectoryMetadataStore', () => {
  let dir: string;
  before(() => (dir = mkdtempSync(join(tmpdir(), 'upfleet-store-'))));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('reads undefined for a name never written', async () => {
    assert.equal(await new DirectoryMetadataStore(dir).read('absent.json'), undefined);
  });

  it('replaces a file with exactly the new bytes and leaves no temp file', async () => {
    const store = new DirectoryMetadataStore(dir);
    await store.writeAtomic('root.json', new Uint8Array([1, 2, 3]));
    await store.writeAtomic('root.json', new Uint8Array([4, 5]));
    assert.deepEqual(await store.read('root.json'), new Uint8Array([4, 5]));
    assert.deepEqual(readdirSync(dir).filter((n) => n.startsWith('root')), ['root.json']);
  });

  it('keeps concurrent writes to different names apart', async () => {
    const store = new DirectoryMetadataStore(dir);
    await Promise.all(Array.from({ length: 10 }, (_, i) => store.writeAtomic(`r${i}.json`, new Uint8Array([i]))));
    for (let i = 0; i < 10; i++) assert.deepEqual(await store.read(`r${i}.json`), new Uint8Array([i]));
  });

  describe('for a name that is not a plain file name', () => {
    it('throws UsageError and writes nothing', async () => {
      const store = new DirectoryMetadataStore(dir);
      for (const name of ['../escape.json', 'a/b.json', '..', '.', '', 'nul\0.json']) {
        await assert.rejects(store.writeAtomic(name, new Uint8Array([1])), UsageError, name);
        await assert.rejects(store.read(name), UsageError, name);
      }
      assert.ok(!readdirSync(join(dir, '..')).includes('escape.json'));
    });
  });
});
