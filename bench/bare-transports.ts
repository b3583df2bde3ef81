/**
 * The transports of bench/director.ts without the director: the same load
 * generators (director-clients.ts) against a server or broker that only reads
 * each manifest and answers it accepted. Their rate is a transport's own ceiling
 * here; their machine-wide CPU per manifest is what the director's run pays
 * before it checks anything (bench/ceiling.ts).
 */
import { createServer } from 'node:http';
import { createServer as createTcpServer, type Socket } from 'node:net';
import { Aedes } from 'aedes';
import { connect } from 'mqtt';
import { HTTP_CLIENT, MQTT_CLIENT, runClient, type Load } from './director-clients.ts';
import { machineBusyUs } from './ceiling.ts';
import { listenLoopback } from '../test/support/loopback.ts';

export interface BareRun {
  manifestsPerSecond: number;
  machineCpuUsPerManifest: number;
}

/** Runs the warm-up load, then measures the load (the director's runs are warmed up too). */
async function measured(run: (load: Load) => Promise<{ sent: number; seconds: number }>, warm: Load, load: Load): Promise<BareRun> {
  await run(warm);
  const busy = machineBusyUs();
  const { sent, seconds } = await run(load);
  return { manifestsPerSecond: sent / seconds, machineCpuUsPerManifest: (machineBusyUs() - busy) / sent };
}

/** A node:http server that reads each body and answers, with the bench's HTTP client and keep-alive. */
export async function bareHttp(warm: Load, perDevice: Load, concurrency: number): Promise<BareRun> {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end('{"accepted":true}'));
  });
  server.keepAliveTimeout = 65_000;
  const { url, close } = await listenLoopback(server);
  try {
    return await measured((load) => runClient(HTTP_CLIENT, { url, perDevice: load, concurrency }), warm, perDevice);
  } finally {
    await close();
  }
}

/**
 * An MQTT client subscribed to every device's manifest topic that publishes each
 * device's ack (QoS 1, as the director's bus), through `url`'s broker; without
 * `url`, through an aedes broker started here (the embedded broker's library,
 * without the director's access rule).
 */
export async function bareMqtt(warm: Load, perDevice: Load, prefix: string, url?: string): Promise<BareRun> {
  const own = url === undefined ? await startAedes() : undefined;
  const responder = connect(own?.url ?? url!, { protocolVersion: 4, clientId: `bare-responder-${prefix}`, clean: true, reconnectPeriod: 0 });
  try {
    await new Promise((resolve, reject) => {
      responder.once('connect', resolve);
      responder.once('error', reject);
    });
    (responder.stream as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
    const accepted = Buffer.from('{"accepted":true}');
    responder.on('message', (topic) => responder.publish(topic.replace(/\/manifest$/, '/ack'), accepted, { qos: 1 }));
    await responder.subscribeAsync(`${prefix}/devices/+/manifest`, { qos: 1 });
    return await measured((load) => runClient(MQTT_CLIENT, { url: own?.url ?? url, prefix, perDevice: load, auth: false }), warm, perDevice);
  } finally {
    await responder.endAsync();
    await own?.close();
  }
}

async function startAedes(): Promise<{ url: string; close(): Promise<void> }> {
  const broker = await Aedes.createBroker();
  const server = createTcpServer({ noDelay: true }, (socket: Socket) => {
    socket.setNoDelay(true);
    broker.handle(socket);
  });
  const { url, close } = await listenLoopback(server);
  return {
    url: url.replace(/^http:/, 'mqtt:'),
    async close() {
      // The broker first: it ends its clients' sockets, which the raw server's close waits for.
      await new Promise<void>((resolve) => broker.close(() => resolve()));
      await close();
    },
  };
}
