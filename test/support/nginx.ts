/**
 * Debian's nginx serving a directory of plain files on loopback, as a test
 * child process: the stock web server in front of an exported image
 * repository (`upfleet-repo export`, `serve --export`).
 *
 * Invariants:
 * - Everything nginx writes (pid, error and access logs, temp directories)
 *   lives in its own temp directory; nothing under /var or /etc is used, so it
 *   runs without root. As root, its workers run as nobody:nogroup, so the
 *   served tree must be world-readable (the temp directory is made 0755).
 * - nginx runs in the foreground (`daemon off`) as our child; `close()` stops
 *   it (SIGQUIT, then SIGKILL) and removes the temp directory.
 * - The config is `nginxConfig`, the same one docs/deployment.md shows: long
 *   caching for versioned metadata and hash-named images, none for
 *   timestamp.json and root.json, and no half-written `.tmp` file served.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './loopback.ts';

export interface Nginx {
  url: string;
  /** The directory of pid, logs and temp files. */
  dir: string;
  /** The access log lines so far (`METHOD PATH STATUS`). */
  accessLog(): string[];
  close(): Promise<void>;
}

/** The server block for a static image repository at `root` (also the config docs/deployment.md shows). */
export function nginxServerBlock(listen: string, root: string): string {
  return `server {
    listen ${listen};
    root ${root};
    # Versioned metadata and hash-named images never change: cache them for ever.
    location /metadata/ { add_header Cache-Control "public, max-age=31536000, immutable"; }
    location /targets/  { add_header Cache-Control "public, max-age=31536000, immutable"; }
    # The two names whose content changes: every client must see the newest.
    location = /metadata/timestamp.json { add_header Cache-Control "no-cache"; }
    location = /metadata/root.json      { add_header Cache-Control "no-cache"; }
    # Files being written (temp + rename) are not part of the tree.
    location ~ \\.tmp$ { return 404; }
  }`;
}

function nginxConfig(dir: string, port: number, root: string): string {
  const asRoot = process.getuid?.() === 0;
  return `${asRoot ? 'user nobody nogroup;\n' : ''}daemon off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 1024; }
http {
  types { application/json json; }
  default_type application/octet-stream;
  log_format plain '$request_method $uri $status';
  access_log ${dir}/access.log plain;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  sendfile on;
  keepalive_timeout 65;
  ${nginxServerBlock(`127.0.0.1:${port}`, root).replace(/\n/g, '\n  ')}
}
`;
}

/**
 * Starts nginx on a free loopback port serving `root`; resolves once it answers.
 * @throws Error naming nginx's error log when it exits or does not answer within 10 s
 */
export async function startNginx(o: { binary: string; root: string }): Promise<Nginx> {
  const dir = mkdtempSync(join(tmpdir(), 'upfleet-nginx-'));
  chmodSync(dir, 0o755);
  for (const sub of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(join(dir, sub));
  // Another process may take the port between freePort and nginx's bind: try again on a new one.
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    writeFileSync(join(dir, 'nginx.conf'), nginxConfig(dir, port, o.root));
    const child = spawn(o.binary, ['-e', join(dir, 'error.log'), '-p', dir, '-c', join(dir, 'nginx.conf')], { stdio: 'ignore' });
    const url = `http://127.0.0.1:${port}`;
    if (await answers(url, child)) return running(child, dir, url);
    child.kill('SIGKILL');
    const log = readLog(join(dir, 'error.log'));
    if (attempt < 3 && /Address already in use/.test(log)) continue;
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`nginx did not start: ${log.trim().split('\n').slice(-3).join(' | ') || 'no error log'}`);
  }
}

async function answers(url: string, child: ChildProcess): Promise<boolean> {
  let exited = false;
  child.once('exit', () => (exited = true));
  for (let waited = 0; waited < 10_000 && !exited; waited += 50) {
    try {
      await (await fetch(`${url}/`)).arrayBuffer();
      return true;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return false;
}

function readLog(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

function running(child: ChildProcess, dir: string, url: string): Nginx {
  const exited = new Promise<void>((resolve) => (child.exitCode !== null ? resolve() : child.once('exit', () => resolve())));
  return {
    url,
    dir,
    accessLog: () => readLog(join(dir, 'access.log')).split('\n').filter(Boolean),
    async close() {
      child.kill('SIGQUIT');
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(timer);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
