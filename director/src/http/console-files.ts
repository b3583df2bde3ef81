/**
 * The web console's built files (director/console/dist, made by Vite at `npm ci`
 * through the root `prepare` script, or `npm run build:console`), served by the
 * director itself: no CDN, nothing fetched from elsewhere at run time.
 *
 * Invariants:
 * - Only `index.html` and flat names under `assets/` are served; a name is
 *   checked against a strict pattern before it touches the file system.
 * - `assets/` names carry a content hash (Vite), so they are cached for a year
 *   and immutable, and kept in memory once read (a few tens of KB); index.html
 *   is read on each request and revalidated by browsers (`no-cache`), so a new
 *   build is picked up by the next page load.
 * - Every answer carries a Content-Security-Policy that allows only this origin.
 * - A missing build is answered with a page that says how to build it.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, extname, join } from 'node:path';
import type { Reply } from './router.ts';

/**
 * Where the built console is, when startDirector is not told: UPFLEET_CONSOLE_DIR (the
 * upfleet-director bin sets it to its own checkout's build), else the build of the
 * @upfleet/director package that resolves from the working directory. Not from this
 * module's own URL: the CLI launcher bundles this source into a cache directory
 * (scripts/launch.mjs), where that URL would name the bundle.
 */
export function defaultConsoleDir(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.UPFLEET_CONSOLE_DIR) return env.UPFLEET_CONSOLE_DIR;
  try {
    const entry = createRequire(join(process.cwd(), 'noop.js')).resolve('@upfleet/director'); // director/src/index.ts
    return join(dirname(entry), '..', 'console', 'dist');
  } catch {
    return undefined;
  }
}

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.map': 'application/json',
};

const ASSET_NAME = /^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$/;

export const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy': "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'same-origin',
  'x-frame-options': 'DENY',
};

const NOT_BUILT = `<!doctype html><meta charset="utf-8"><title>Upfleet console not built</title>
<h1>The web console is not built</h1>
<p>The director serves the console from <code>director/console/dist</code> (or <code>UPFLEET_CONSOLE_DIR</code>), which is missing.
Build it from the repository root with <code>npm run build:console</code> (<code>npm ci</code> does it too),
then reload. The admin API works without it.</p>`;

export class ConsoleFiles {
  readonly #cache = new Map<string, Uint8Array>();

  /** `dir`: the Vite build (director/console/dist); undefined: no build to serve. */
  constructor(private readonly dir: string | undefined) {}

  /** The console page itself (for `/`). */
  index(): Reply {
    const bytes = this.#read('index.html', false);
    if (!bytes) return { status: 503, bytes: new TextEncoder().encode(NOT_BUILT), contentType: CONTENT_TYPES['.html']!, headers: { ...SECURITY_HEADERS, 'cache-control': 'no-store' } };
    return { status: 200, bytes, contentType: CONTENT_TYPES['.html']!, headers: { ...SECURITY_HEADERS, 'cache-control': 'no-cache' } };
  }

  /** A hashed build asset, or undefined (404) for any other name. */
  asset(name: string): Reply | undefined {
    const type = CONTENT_TYPES[extname(name)];
    if (!ASSET_NAME.test(name) || !type) return undefined;
    const bytes = this.#read(`assets/${name}`);
    if (!bytes) return undefined;
    return { status: 200, bytes, contentType: type, headers: { ...SECURITY_HEADERS, 'cache-control': 'public, max-age=31536000, immutable' } };
  }

  #read(name: string, keep = true): Uint8Array | undefined {
    let bytes = this.#cache.get(name);
    if (bytes || this.dir === undefined) return bytes;
    try {
      bytes = new Uint8Array(readFileSync(join(this.dir, name)));
    } catch {
      return undefined;
    }
    if (keep) this.#cache.set(name, bytes);
    return bytes;
  }
}
