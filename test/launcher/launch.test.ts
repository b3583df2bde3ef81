/**
 * The bin launcher (scripts/launch.cjs, re-exported by launch.mjs for ES module bins): runs the current sources, from a cached bundle when
 * nothing changed, and through tsx when a bundle would not be the same program.
 *
 * Each test gets its own little project in a temp dir: a copy of the launcher in scripts/, a
 * node_modules with esbuild and tsx linked from this repo, an `@upfleet/demo` workspace (a
 * symlink to its sources, as npm makes them) and a plain package `ext-pkg` that must stay
 * external. Source files are dated a minute back, as files edited before a launch are: the
 * launcher does not cache a build when an input is younger than its mtime slack.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = fileURLToPath(new URL('../../', import.meta.url));
let base: string;

before(() => {
  base = mkdtempSync(join(tmpdir(), 'upfleet-launch-'));
});
after(() => {
  rmSync(base, { recursive: true, force: true });
});

let seq = 0;
/** A fresh project; returns its dir. `secondsAgo` dates every file written by `put`. */
function project(): { dir: string; bin: string; put(path: string, text: string, secondsAgo?: number): void; cache(): string[] } {
  const dir = join(base, `p${seq++}`);
  const put = (path: string, text: string, secondsAgo = 60): void => {
    const file = join(dir, path);
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, text);
    const t = Date.now() / 1000 - secondsAgo;
    utimesSync(file, t, t);
  };
  mkdirSync(join(dir, 'scripts'), { recursive: true });
  const t = Date.now() / 1000 - 60;
  for (const file of ['scripts/launch.cjs', 'scripts/launch.mjs']) {
    copyFileSync(join(repo, file), join(dir, file));
    utimesSync(join(dir, file), t, t);
  }
  put('package.json', '{ "name": "demo-root", "private": true, "type": "module" }\n');
  mkdirSync(join(dir, 'node_modules/@upfleet'), { recursive: true });
  symlinkSync(join(repo, 'node_modules/esbuild'), join(dir, 'node_modules/esbuild'));
  symlinkSync(join(repo, 'node_modules/tsx'), join(dir, 'node_modules/tsx'));
  symlinkSync('../../lib', join(dir, 'node_modules/@upfleet/demo'));
  put('node_modules/ext-pkg/package.json', '{ "name": "ext-pkg", "type": "module", "exports": "./index.js" }\n');
  put('node_modules/ext-pkg/index.js', "export const external = 'EXTERNAL-' + 'PACKAGE';\n");
  put('lib/package.json', '{ "name": "@upfleet/demo", "type": "module", "exports": { "./*": "./src/*" } }\n');
  put('lib/src/greet.ts', "export function greet(who: string): string {\n  return `hello ${who}`;\n}\n");
  put('app/src/cli.ts', [
    "import { greet } from '@upfleet/demo/greet.ts';",
    "import { external } from 'ext-pkg';",
    "import { answer } from './answer.ts';",
    'class DemoThing {}',
    'console.log(`${greet(process.argv[2] ?? "nobody")} ${answer} ${external} ${DemoThing.name}`);',
    '',
  ].join('\n'));
  put('app/src/answer.ts', 'export const answer: number = 42;\n');
  const bin = join(dir, 'app/bin/demo-cli');
  put('app/bin/demo-cli', "#!/usr/bin/env node\nimport { launch } from '../../scripts/launch.mjs';\nawait launch(import.meta.url, '../src/cli.ts');\n");
  chmodSync(bin, 0o755);
  const cache = (): string[] => {
    const cacheDir = join(dir, 'node_modules/.cache/upfleet');
    return existsSync(cacheDir) ? readdirSync(cacheDir).sort() : [];
  };
  return { dir, bin, put, cache };
}

function run(bin: string, args: string[] = [], env: Record<string, string> = {}): SpawnSyncReturns<string> {
  return spawnSync(bin, args, { encoding: 'utf8', timeout: 60_000, env: { ...process.env, UPFLEET_LAUNCH_TRACE: '1', ...env } });
}

describe('the launcher', () => {
  it('bundles the workspace sources once, keeps packages external, then starts from the cache', () => {
    const p = project();
    const first = run(p.bin, ['fleet']);
    assert.equal(first.status, 0, first.stderr);
    assert.equal(first.stdout, 'hello fleet 42 EXTERNAL-PACKAGE DemoThing\n');
    assert.match(first.stderr, /launch: built /);
    const bundles = p.cache().filter((f) => f.endsWith('.cjs'));
    assert.equal(bundles.length, 1, 'no top-level await, no default import: a CommonJS bundle');
    assert.ok(p.cache().includes('demo-cli.json') && p.cache().includes(`${bundles[0]}.map`), p.cache().join(' '));
    const code = readFileSync(join(p.dir, 'node_modules/.cache/upfleet', bundles[0]!), 'utf8');
    assert.match(code, /hello \$\{who\}/, 'the workspace source is in the bundle');
    assert.doesNotMatch(code, /EXTERNAL-/, 'the package is not');
    assert.match(code, /require\("ext-pkg"\)/);
    assert.match(code, /^'use strict';/, 'strict, as the ES module sources are');

    const second = run(p.bin, ['again']);
    assert.equal(second.status, 0, second.stderr);
    assert.equal(second.stdout, 'hello again 42 EXTERNAL-PACKAGE DemoThing\n');
    assert.match(second.stderr, /launch: cached .*checked in [\d.]+ ms/);
    assert.deepEqual(p.cache(), [bundles[0], `${bundles[0]}.map`, `${bundles[0]}.v8cache`, 'demo-cli.json'].sort());
  });

  it('compiles a CommonJS bundle with the code cache the launch before left, and ignores a damaged one', () => {
    const p = project();
    const first = run(p.bin, ['one']);
    assert.equal(first.status, 0, first.stderr);
    assert.match(first.stderr, /launch: code cache none/);
    const cacheFile = join(p.dir, 'node_modules/.cache/upfleet', p.cache().find((f) => f.endsWith('.v8cache'))!);
    const second = run(p.bin, ['two']);
    assert.equal(second.stdout, 'hello two 42 EXTERNAL-PACKAGE DemoThing\n');
    assert.match(second.stderr, /launch: code cache used/);
    writeFileSync(cacheFile, 'not a V8 code cache');
    const damaged = run(p.bin, ['three']);
    assert.equal(damaged.status, 0, damaged.stderr);
    assert.equal(damaged.stdout, 'hello three 42 EXTERNAL-PACKAGE DemoThing\n');
    assert.match(damaged.stderr, /launch: code cache rejected/);
    assert.match(run(p.bin, ['four']).stderr, /launch: code cache used/, 'the damaged cache was written again');
  });

  it('runs from a CommonJS bin file as from an ES module one', () => {
    const p = project();
    p.put('app/cjs-bin/package.json', '{ "type": "commonjs" }\n');
    const bin = join(p.dir, 'app/cjs-bin/demo-cjs');
    p.put('app/cjs-bin/demo-cjs', [
      '#!/usr/bin/env node',
      "const { pathToFileURL } = require('node:url');",
      "require('../../scripts/launch.cjs').launch(pathToFileURL(__filename).href, '../src/cli.ts');",
      '',
    ].join('\n'));
    chmodSync(bin, 0o755);
    const first = run(bin, ['cjs']);
    assert.equal(first.stdout, 'hello cjs 42 EXTERNAL-PACKAGE DemoThing\n', first.stderr);
    assert.match(first.stderr, /launch: built /);
    const second = run(bin, ['again']);
    assert.equal(second.stdout, 'hello again 42 EXTERNAL-PACKAGE DemoThing\n', second.stderr);
    assert.match(second.stderr, /launch: cached /);
    assert.ok(p.cache().includes('demo-cjs.json'), p.cache().join(' '));
  });

  it('loads a package imported behind a dynamic import() only when that code runs', () => {
    const p = project();
    p.put('node_modules/loud-pkg/package.json', '{ "name": "loud-pkg", "type": "module", "exports": "./index.js" }\n');
    p.put('node_modules/loud-pkg/index.js', "console.log('loud-pkg evaluated');\nexport const loud = 'LOUD';\n");
    p.put('app/src/heavy.ts', "import { loud } from 'loud-pkg';\nexport const heavy = () => loud;\n");
    p.put('app/src/cli.ts', [
      "if (process.argv[2] === 'heavy') import('./heavy.ts').then(({ heavy }) => console.log(heavy()));",
      "else console.log('light');",
      '',
    ].join('\n'));
    const light = run(p.bin, ['light']);
    assert.equal(light.stdout, 'light\n', light.stderr);
    assert.ok(p.cache().some((f) => f.endsWith('.cjs')), p.cache().join(' '));
    const heavy = run(p.bin, ['heavy']);
    assert.equal(heavy.stdout, 'loud-pkg evaluated\nLOUD\n', heavy.stderr);
    assert.match(heavy.stderr, /launch: cached/);
  });

  it('rebuilds a CommonJS bundle when a package it requires changes (its package.json is an input)', () => {
    const p = project();
    assert.equal(run(p.bin).stdout, 'hello nobody 42 EXTERNAL-PACKAGE DemoThing\n');
    assert.ok(p.cache().some((f) => f.endsWith('.cjs')), p.cache().join(' '));
    // An update that gives the package a default export: a CommonJS bundle would no longer be the same program.
    p.put('node_modules/ext-pkg/package.json', '{ "name": "ext-pkg", "version": "2.0.0", "type": "module", "exports": "./index.js" }\n', 30);
    p.put('node_modules/ext-pkg/index.js', "export const external = 'EXTERNAL-' + 'PACKAGE';\nexport default 'DEFAULT';\n", 30);
    const updated = run(p.bin);
    assert.equal(updated.stdout, 'hello nobody 42 EXTERNAL-PACKAGE DemoThing\n', updated.stderr);
    assert.match(updated.stderr, /stale: .*ext-pkg\/package\.json/);
    assert.match(updated.stderr, /not a CommonJS bundle: ext-pkg has a default export/);
  });

  it('bundles as an ES module whatever a CommonJS bundle would change: top-level await, a default export, a dual package', () => {
    const tla = project();
    tla.put('app/src/cli.ts', "const answer = await Promise.resolve(42);\nconsole.log(`tla ${answer}`);\n");
    const out = run(tla.bin);
    assert.equal(out.stdout, 'tla 42\n', out.stderr);
    assert.match(out.stderr, /not a CommonJS bundle: .*[Tt]op-level await/);
    assert.ok(tla.cache().some((f) => f.endsWith('.mjs')) && !tla.cache().some((f) => f.endsWith('.cjs')), tla.cache().join(' '));
    assert.match(run(tla.bin).stderr, /launch: cached .*\.mjs/);

    const withDefault = project();
    withDefault.put('node_modules/ext-pkg/index.js', "export const external = 'EXTERNAL-' + 'PACKAGE';\nexport default 'DEFAULT';\n");
    withDefault.put('app/src/cli.ts', "import value, { external } from 'ext-pkg';\nconsole.log(value, external);\n");
    const d = run(withDefault.bin);
    assert.equal(d.stdout, 'DEFAULT EXTERNAL-PACKAGE\n', d.stderr);
    assert.match(d.stderr, /not a CommonJS bundle: ext-pkg has a default export/);

    const dual = project();
    dual.put('node_modules/dual-pkg/package.json', '{ "name": "dual-pkg", "exports": { "import": "./index.mjs", "require": "./index.cjs" } }\n');
    dual.put('node_modules/dual-pkg/index.mjs', "export const flavour = 'esm';\n");
    dual.put('node_modules/dual-pkg/index.cjs', "exports.flavour = 'cjs';\n");
    dual.put('app/src/cli.ts', "import { flavour } from 'dual-pkg';\nconsole.log(flavour);\n");
    const du = run(dual.bin);
    assert.equal(du.stdout, 'esm\n', du.stderr);
    assert.match(du.stderr, /not a CommonJS bundle: .*dual-pkg is .*index\.cjs for require but .*index\.mjs for import/);
  });

  it('rebuilds when any input changes: a source, a workspace source, or a file goes missing', () => {
    const p = project();
    assert.equal(run(p.bin).stdout, 'hello nobody 42 EXTERNAL-PACKAGE DemoThing\n');
    p.put('app/src/answer.ts', 'export const answer: number = 43;\n', 30);
    const changed = run(p.bin);
    assert.equal(changed.stdout, 'hello nobody 43 EXTERNAL-PACKAGE DemoThing\n');
    assert.match(changed.stderr, /stale: .*answer\.ts/);

    // Same size, other content: the mtime alone gives it away.
    p.put('lib/src/greet.ts', "export function greet(who: string): string {\n  return `howdy ${who}`;\n}\n", 20);
    assert.equal(run(p.bin).stdout, 'howdy nobody 43 EXTERNAL-PACKAGE DemoThing\n');

    p.put('app/src/cli.ts', "import { answer } from './other.ts';\nconsole.log(answer);\n", 10);
    p.put('app/src/other.ts', 'export const answer = "other";\n', 10);
    assert.equal(run(p.bin).stdout, 'other\n');
    rmSync(join(p.dir, 'app/src/answer.ts'));
    const afterRemoval = run(p.bin);
    assert.equal(afterRemoval.stdout, 'other\n');
    assert.match(afterRemoval.stderr, /launch: cached/, 'a file that is no longer an input does not matter');
  });

  it('rebuilds over a damaged manifest or a missing bundle', () => {
    const p = project();
    assert.equal(run(p.bin).status, 0);
    const manifest = join(p.dir, 'node_modules/.cache/upfleet/demo-cli.json');
    writeFileSync(manifest, '{"format":1,"entry":');
    const damaged = run(p.bin);
    assert.equal(damaged.stdout, 'hello nobody 42 EXTERNAL-PACKAGE DemoThing\n');
    assert.match(damaged.stderr, /launch: built /);
    const { bundle } = JSON.parse(readFileSync(manifest, 'utf8')) as { bundle: string };
    rmSync(join(p.dir, 'node_modules/.cache/upfleet', bundle));
    const missing = run(p.bin);
    assert.equal(missing.stdout, 'hello nobody 42 EXTERNAL-PACKAGE DemoThing\n');
    assert.match(missing.stderr, /launch: built /);
  });

  it('does not cache a build whose inputs were modified just before it (an edit racing the build)', () => {
    const p = project();
    p.put('app/src/answer.ts', 'export const answer: number = 7;\n', 0);
    const first = run(p.bin);
    assert.equal(first.stdout, 'hello nobody 7 EXTERNAL-PACKAGE DemoThing\n');
    assert.match(first.stderr, /not cached/);
    assert.ok(!p.cache().includes('demo-cli.json'));
    assert.match(run(p.bin).stderr, /launch: built /);
  });

  it('maps stack traces to the .ts lines', () => {
    const p = project();
    p.put('app/src/cli.ts', "import { greet } from '@upfleet/demo/greet.ts';\n\nfunction fail(): never {\n  throw new Error(greet('trace'));\n}\nfail();\n");
    const out = run(p.bin);
    assert.equal(out.status, 1);
    assert.match(out.stderr, /launch: built /);
    assert.match(out.stderr, /Error: hello trace\n\s+at fail \(.*app\/src\/cli\.ts:4:9\)/);
  });

  it('runs a source that uses import.meta through tsx, where import.meta.url names the source', () => {
    const p = project();
    p.put('app/src/cli.ts', 'console.log(new URL(".", import.meta.url).pathname);\n');
    const out = run(p.bin);
    assert.equal(out.status, 0, out.stderr);
    assert.equal(out.stdout, `${join(p.dir, 'app/src')}/\n`);
    assert.match(out.stderr, /launch: tsx \(bundle failed: a source uses import\.meta/);
    assert.ok(!p.cache().includes('demo-cli.json'));
  });

  it('falls back to tsx when the bundle fails, and UPFLEET_LAUNCH=tsx forces it', () => {
    const p = project();
    rmSync(join(p.dir, 'node_modules/esbuild'));
    const noEsbuild = run(p.bin, ['tsx']);
    assert.equal(noEsbuild.stdout, 'hello tsx 42 EXTERNAL-PACKAGE DemoThing\n');
    assert.match(noEsbuild.stderr, /launch: tsx \(bundle failed: .*esbuild/);

    const q = project();
    const forced = run(q.bin, ['forced'], { UPFLEET_LAUNCH: 'tsx' });
    assert.equal(forced.stdout, 'hello forced 42 EXTERNAL-PACKAGE DemoThing\n');
    assert.match(forced.stderr, /launch: tsx \(UPFLEET_LAUNCH=tsx\)/);
    assert.deepEqual(q.cache(), []);
  });

  it('survives many cold launches at once: every one runs complete code', async () => {
    const p = project();
    const outputs = await Promise.all(Array.from({ length: 8 }, (_, i) => new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn(p.bin, [`n${i}`], { stdio: ['ignore', 'pipe', 'ignore'] });
      let out = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
      child.on('close', (code) => resolve({ code, out }));
    })));
    outputs.forEach(({ code, out }, i) => {
      assert.equal(code, 0);
      assert.equal(out, `hello n${i} 42 EXTERNAL-PACKAGE DemoThing\n`);
    });
    assert.ok(!p.cache().some((f) => f.endsWith('.tmp')), 'no temp file is left behind');
    assert.match(run(p.bin).stderr, /launch: cached/);
  });
});
