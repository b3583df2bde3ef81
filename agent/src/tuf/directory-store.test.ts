import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
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

  it('lists its directory once: its own writes and removals show, files put there by others after the first read do not', async () => {
    const own = mkdtempSync(join(dir, 'listed-'));
    writeFileSync(join(own, 'before.json'), 'b');
    const store = new DirectoryMetadataStore(own);
    assert.deepEqual(await store.read('before.json'), new TextEncoder().encode('b'));
    writeFileSync(join(own, 'later.json'), 'l');
    assert.equal(await store.read('later.json'), undefined);
    assert.deepEqual(await new DirectoryMetadataStore(own).read('later.json'), new TextEncoder().encode('l'));
    await store.writeAtomic('mine.json', new Uint8Array([7]), { durable: false });
    assert.deepEqual(await store.read('mine.json'), new Uint8Array([7]));
    await store.remove('mine.json');
    assert.equal(await store.read('mine.json'), undefined);
    unlinkSync(join(own, 'before.json'));
    assert.equal(await store.read('before.json'), undefined, 'a listed file removed by others reads as absent');
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
