/** One device: its ECUs and installed images, assignments with live per-ECU progress, manifest history, security events. */
import { api, useLive } from '../api.ts';
import { ActionButton, Badge, bytes, Empty, ErrorBox, Loading, Online, ProgressBar, Section, shortHash, Time } from '../components.tsx';
import type { AssignmentRecord, DeviceView, ManifestRecord } from '@upfleet/director/admin-records.ts';

const OPEN = new Set(['pending', 'downloading', 'installing']);

export function DevicePage({ id }: { id: string }) {
  const path = `/admin/devices/${encodeURIComponent(id)}`;
  const view = useLive(() => api<DeviceView>('GET', path), `device:${id}`,
    (c) => c.devices.includes(id) || c.assignments.length > 0);
  const manifests = useLive(() => api<{ manifests: ManifestRecord[] }>('GET', `${path}/manifests?limit=20`).then((r) => r.manifests), `manifests:${id}`,
    (c) => c.devices.includes(id));
  const d = view.data;
  if (view.error && !d) return <div><h1>Device {id}</h1><ErrorBox error={view.error} /></div>;
  if (!d) return <Loading />;
  const assignments = [...d.assignments].reverse();
  return (
    <div>
      <h1>Device <span data-testid="device-id">{d.id}</span> <Badge status={d.status} /> <Online online={d.online} /></h1>
      <p class="muted">
        tags: {d.tags.length ? d.tags.join(', ') : 'none'} · last seen <Time at={d.lastSeen} /> · registered <Time at={d.createdAt} />
      </p>
      <div class="toolbar">
        {d.status === 'pending' && <ActionButton label="Approve" testId="approve" action={() => api('POST', `${path}/approve`).then(view.reload)} />}
        {d.status !== 'decommissioned' && <ActionButton label="Decommission" danger testId="decommission" action={() => (confirmed(`Decommission ${d.id}? Its open assignments are cancelled.`) ? api('POST', `${path}/decommission`).then(view.reload) : Promise.resolve())} />}
      </div>
      <ErrorBox error={view.error} />

      <Section title="ECUs">
        <table data-testid="ecu-table">
          <thead><tr><th>serial</th><th>hardware ID</th><th>role</th><th>installed image</th><th>length</th><th>sha256</th><th>release counter</th></tr></thead>
          <tbody>
            {d.ecus.map((e) => (
              <tr key={e.serial}>
                <td>{e.serial}</td><td>{e.hardwareId}</td><td>{e.primary ? 'primary' : 'secondary'}</td>
                <td>{e.installed?.filename ?? <span class="muted">none reported</span>}</td>
                <td>{e.installed ? bytes(e.installed.length) : '-'}</td>
                <td><code>{e.installed ? shortHash(e.installed.hashes) : '-'}</code></td>
                <td>{e.releaseCounter}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </Section>

      <Section title="Assignments">
        {assignments.length === 0 ? <Empty>No assignments.</Empty> : assignments.map((a) => <AssignmentCard key={a.id} a={a} />)}
      </Section>

      <Section title="Security events">
        {d.events.length === 0 ? <Empty>No security events.</Empty> : (
          <table data-testid="event-table">
            <thead><tr><th>when</th><th>kind</th><th>code</th><th>ECU</th><th>detail</th></tr></thead>
            <tbody>
              {[...d.events].reverse().map((e) => (
                <tr key={e.id} class={`event-${e.kind}`}>
                  <td><Time at={e.at} /></td><td><Badge status={e.kind} /></td><td><code>{e.code}</code></td><td>{e.ecuSerial ?? '-'}</td><td>{e.detail}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Section>

      <Section title="Manifest history">
        {!manifests.data ? <Loading /> : manifests.data.length === 0 ? <Empty>No accepted manifests.</Empty> : (
          <table data-testid="manifest-table">
            <thead><tr><th>counter</th><th>received</th><th>via</th><th>installed images</th><th>last result</th></tr></thead>
            <tbody>
              {manifests.data.map((m) => (
                <tr key={m.id}>
                  <td>{m.counter}</td><td><Time at={m.receivedAt} /></td><td>{m.via}</td>
                  <td class="small">{installedOf(m.summary)}</td>
                  <td class="small">{resultOf(m.summary)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Section>
    </div>
  );
}

function AssignmentCard({ a }: { a: AssignmentRecord }) {
  const open = OPEN.has(a.status);
  return (
    <div class="card wide" data-testid={`assignment-${a.id}`}>
      <div class="card-head">
        <Badge status={a.status} /> <code class="small">{a.id}</code>
        {a.campaignId && <> · campaign <a href={`#/campaigns/${a.campaignId}`}>{a.campaignId.slice(0, 8)}</a></>}
        <span class="muted small"> · created <Time at={a.createdAt} /> · updated <Time at={a.updatedAt} /></span>
      </div>
      {a.errorCode && <div class="error small">{a.errorCode}{a.errorMessage ? `: ${a.errorMessage}` : ''}</div>}
      <table>
        <thead><tr><th>ECU</th><th>image</th><th>version</th><th>release counter</th><th>size</th><th>progress</th></tr></thead>
        <tbody>
          {a.items.map((i) => (
            <tr key={i.ecuSerial}>
              <td>{i.ecuSerial}</td><td>{i.image}</td><td>{i.version ?? '-'}</td><td>{i.releaseCounter}</td><td>{bytes(i.length)}</td>
              <td>{open || a.progress[i.ecuSerial] ? <ProgressBar progress={a.progress[i.ecuSerial]} testId={`progress-${a.deviceId}-${i.ecuSerial}`} /> : <span class="muted">-</span>}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function confirmed(question: string): boolean {
  return window.confirm(question);
}

/** "ecu: image" per ECU of a manifest summary (director/src/manifests.ts). */
function installedOf(summary: Record<string, unknown>): string {
  const ecus = summary.installed as Record<string, { filename?: string } | null> | undefined;
  if (!ecus || typeof ecus !== 'object') return '-';
  return Object.entries(ecus).map(([serial, img]) => `${serial}: ${img?.filename ?? 'none'}`).join(', ');
}

function resultOf(summary: Record<string, unknown>): string {
  const r = summary.installationResult as { success?: boolean; code?: string } | undefined;
  if (!r || typeof r !== 'object') return '-';
  return r.success ? 'success' : `failed${r.code ? ` (${r.code})` : ''}`;
}
