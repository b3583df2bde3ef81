/**
 * Test support until (and beside) the real director: one device's director
 * repository built with the core RepositoryBuilder and served over loopback
 * HTTP in the director's URL layout, with register/manifest/progress endpoints
 * that verify and record what the agent sends. The real director
 * (director/src/index.ts) is used by the end-to-end tests in test/.
 */
import http from 'node:http';
import { imageCustom, Key, RepositoryBuilder, TargetFile, parseVehicleManifest, verifyVehicleManifest, type SignedVehicleManifest } from '@upfleet/core';
import { listenLoopback, type Loopback } from '../../../test/support/loopback.ts';

export class BuilderDirector {
  readonly repo: RepositoryBuilder;
  readonly manifests: SignedVehicleManifest[] = [];
  readonly progress: unknown[] = [];
  primaryKey: Key | undefined;
  registration: unknown;
  url = '';
  #listening: Loopback | undefined;

  constructor(
    readonly deviceId: string,
    now: Date,
    readonly provisioningToken = 'prov-token',
  ) {
    this.repo = new RepositoryBuilder({ now });
    for (const role of ['timestamp', 'snapshot', 'targets']) this.repo.setSignedField(role, 'deviceId', deviceId);
    this.repo.commit();
  }

  /** Assigns images: ECU serial -> [name, image target info, hardware ID]; the release counter is copied from the image's. */
  assign(entries: Array<{ ecuSerial: string; hardwareId: string; name: string; info: TargetFile; order?: number }>): void {
    for (const name of Object.keys(this.repo.targets.targets)) this.repo.removeTarget(name);
    for (const e of entries) {
      const custom = {
        ecuIdentifiers: { [e.ecuSerial]: { hardwareId: e.hardwareId } },
        releaseCounter: imageCustom(e.info).releaseCounter,
        ...(e.order !== undefined && { order: e.order }),
      };
      this.repo.setTarget(e.name, new TargetFile(e.info.length, { ...e.info.hashes }, custom));
    }
    this.repo.commit();
  }

  /** Listens on loopback, on `port` when given (a restart at the same address). */
  async start(port = 0): Promise<void> {
    const base = `/api/v1/devices/${this.deviceId}/`;
    const server = http.createServer((req, res) => {
      const path = new URL(req.url ?? '/', 'http://x').pathname;
      if (!path.startsWith(base)) return void res.writeHead(404).end();
      const rel = path.slice(base.length);
      if (req.method === 'GET') {
        const body = this.repo.files.get(decodeURIComponent(rel));
        if (!body) return void res.writeHead(404).end();
        return void res.writeHead(200, { 'content-length': body.byteLength }).end(body);
      }
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const json = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
        if (rel === 'register') {
          if (req.headers.authorization !== `Bearer ${this.provisioningToken}`) return void res.writeHead(401).end('{}');
          this.registration = json;
          this.primaryKey = Key.fromJSON((json.primary as { publicKey: unknown }).publicKey);
          return void res.writeHead(201).end(JSON.stringify({ deviceId: this.deviceId, status: 'active', rootVersion: 1 }));
        }
        if (rel === 'manifest') {
          try {
            const m = parseVehicleManifest(json);
            verifyVehicleManifest(m, this.primaryKey!);
            this.manifests.push(m);
            return void res.writeHead(200).end(JSON.stringify({ accepted: true, counter: m.signed.counter }));
          } catch (e) {
            return void res.writeHead(422).end(JSON.stringify({ error: { code: 'BAD_SIGNATURE', message: (e as Error).message } }));
          }
        }
        if (rel === 'progress') {
          this.progress.push(json);
          return void res.writeHead(204).end();
        }
        res.writeHead(404).end();
      });
    });
    this.#listening = await listenLoopback(server, port);
    this.url = this.#listening.url;
  }

  async close(): Promise<void> {
    await this.#listening?.close();
  }
}
