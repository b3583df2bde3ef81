/** Prometheus metrics of one director instance (its own registry, so tests can run several). */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export class DirectorMetrics {
  readonly registry = new Registry();
  readonly manifestsAccepted = new Counter({ name: 'upfleet_director_manifests_accepted_total', help: 'Manifests accepted', labelNames: ['via'], registers: [this.registry] });
  readonly manifestsRejected = new Counter({ name: 'upfleet_director_manifests_rejected_total', help: 'Manifests refused, by rule', labelNames: ['via', 'code'], registers: [this.registry] });
  readonly attacks = new Counter({ name: 'upfleet_director_attacks_reported_total', help: 'Security events recorded from manifests', labelNames: ['code'], registers: [this.registry] });
  readonly assignments = new Counter({ name: 'upfleet_director_assignments_total', help: 'Assignment state changes', labelNames: ['status'], registers: [this.registry] });
  readonly metadataPublished = new Counter({ name: 'upfleet_director_metadata_published_total', help: 'Per-device targets versions signed', registers: [this.registry] });
  readonly httpRequests = new Histogram({ name: 'upfleet_director_http_request_seconds', help: 'HTTP request duration', labelNames: ['method', 'route', 'status'], buckets: [0.001, 0.005, 0.02, 0.1, 0.5, 2], registers: [this.registry] });
  /** What the online gauge reads at each scrape (set by the services, which own the store). */
  countOnline: () => Promise<number> = async () => 0;
  readonly devicesOnline: Gauge = new Gauge({
    name: 'upfleet_director_devices_online', help: 'Devices whose MQTT status is online', registers: [this.registry],
    collect: async () => {
      // A store that cannot answer now leaves the last count rather than failing the scrape.
      await this.countOnline().then((n) => this.devicesOnline.set(n), () => {});
    },
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }
}
