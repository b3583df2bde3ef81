import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { ProgressBars, renderBar } from './progress-bars.ts';

describe('renderBar', () => {
  it('draws the share done, the percentage and the sizes', () => {
    const line = renderBar({ ecuSerial: 'brake-1', state: 'installing', done: 512 * 1024, total: 2 * 1024 * 1024 });
    assert.match(line, /^brake-1\s+installing\s+\[#{8}-{22}\]\s+25% 0\.50\/2\.00 MiB$/);
  });

  it('shows a 30 KB image in KiB, not as 0.0/0.0 MB', () => {
    const line = renderBar({ ecuSerial: 'door-1', state: 'downloading', done: 15_000, total: 30_000 });
    assert.match(line, /50% 14\.6\/29\.3 KiB$/);
  });

  it('shows a finished empty image as complete', () => {
    assert.match(renderBar({ ecuSerial: 'x', state: 'downloading', done: 0, total: 0 }), /\[#{30}\] 100%/);
  });
});

describe('ProgressBars', () => {
  it('keeps one line per ECU and redraws them in place', () => {
    const out = new PassThrough();
    let text = '';
    out.on('data', (d: Buffer) => (text += d.toString()));
    const bars = new ProgressBars(out as unknown as NodeJS.WriteStream);
    bars.update({ ecuSerial: 'a', state: 'downloading', done: 10, total: 10 });
    bars.update({ ecuSerial: 'b', state: 'downloading', done: 10, total: 10 });
    bars.finish();
    const lastDraw = text.slice(text.lastIndexOf('\x1b[2A'));
    assert.equal((lastDraw.match(/\n/g) ?? []).length, 2, 'two lines redrawn after moving up two');
    assert.match(lastDraw, /a\s+downloading/);
    assert.match(lastDraw, /b\s+downloading/);
  });
});
