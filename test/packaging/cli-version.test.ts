/**
 * Every CLI answers --version with its package's version: each bin as a user
 * runs it (a child process through the shared launcher).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CLIS = [
  { bin: 'upfleet-repo', pkg: 'image-repo' },
  { bin: 'upfleet-director', pkg: 'director' },
  { bin: 'upfleet-agent', pkg: 'agent' },
  { bin: 'upfleet-sim', pkg: 'device-sim' },
];

function run(path: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [path, ...args], { env: { ...process.env, UPFLEET_CONFIG: '' } }, (error, stdout, stderr) => {
      resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

describe('--version', () => {
  for (const { bin, pkg } of CLIS) {
    it(`${bin} prints the version of ${pkg}/package.json and exits 0`, async () => {
      const version = (JSON.parse(readFileSync(`${ROOT}/${pkg}/package.json`, 'utf8')) as { version: string }).version;
      const results = await Promise.all([run(`${ROOT}/${pkg}/bin/${bin}`, ['--version']), run(`${ROOT}/${pkg}/bin/${bin}`, ['-V'])]);
      for (const r of results) {
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stdout, `${bin} ${version}\n`);
        assert.equal(r.stderr, '');
      }
    });
  }
});
