/** Fleet overview: devices by status and online, versions per hardware ID, recent failures, and every device. */
import { useState } from 'preact/hooks';
import { api, useLive } from '../api.ts';
import { Badge, Empty, ErrorBox, Loading, Online, Section, Time } from '../components.tsx';
import type { DeviceStatus, FleetSummary, PublicDevice } from '@upfleet/director/admin-records.ts';

const STATUSES: Array<DeviceStatus> = ['active', 'pending', 'preregistered', 'decommissioned'];

export function FleetPage() {
  const summary = useLive(() => api<FleetSummary>('GET', '/admin/fleet'), 'fleet');
  const [filter, setFilter] = useState<DeviceStatus | ''>('');
  const devices = useLive(
    () => api<{ devices: PublicDevice[] }>('GET', `/admin/devices${filter ? `?status=${filter}` : ''}`).then((r) => r.devices),
    `devices:${filter}`, (c) => c.devices.length > 0,
  );
  const s = summary.data;
  return (
    <div>
      <h1>Fleet</h1>
      <ErrorBox error={summary.error ?? devices.error} />
      {!s ? <Loading /> : (
        <>
          <div class="cards">
            <div class="card" data-testid="count-total"><div class="card-value">{s.devices.total}</div><div class="card-label">devices</div></div>
            <div class="card" data-testid="count-online"><div class="card-value">{s.devices.online}</div><div class="card-label">online</div></div>
            {STATUSES.map((st) => (
              <div class="card" key={st} data-testid={`count-${st}`}><div class="card-value">{s.devices.byStatus[st]}</div><div class="card-label">{st}</div></div>
            ))}
          </div>
          <div class="columns">
            <Section title="Versions per hardware ID">
              {s.versions.length === 0 ? <Empty>No ECUs yet.</Empty> : (
                <table>
                  <thead><tr><th>hardware ID</th><th>installed image</th><th>release counter</th><th>ECUs</th></tr></thead>
                  <tbody>
                    {s.versions.map((v) => (
                      <tr key={`${v.hardwareId}/${v.image}/${v.releaseCounter}`}>
                        <td>{v.hardwareId}</td><td>{v.image ?? <span class="muted">none reported</span>}</td><td>{v.releaseCounter}</td><td>{v.ecus}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              )}
            </Section>
            <Section title="Recent failures">
              {s.recentFailures.length === 0 && s.recentEvents.length === 0 ? <Empty>No failures and no security events.</Empty> : (
                <table>
                  <thead><tr><th>when</th><th>device</th><th>what</th><th>code</th></tr></thead>
                  <tbody>
                    {[
                      ...s.recentFailures.map((f) => ({ at: f.at, deviceId: f.deviceId, what: f.campaignId ? 'campaign assignment failed' : 'assignment failed', code: f.errorCode ?? '-', key: `a${f.assignmentId}` })),
                      ...s.recentEvents.map((e) => ({ at: e.at, deviceId: e.deviceId, what: e.kind.replace('_', ' '), code: e.code, key: `e${e.id}` })),
                    ].sort((a, b) => b.at.localeCompare(a.at)).slice(0, 20).map((r) => (
                      <tr key={r.key}><td><Time at={r.at} /></td><td><a href={`#/devices/${encodeURIComponent(r.deviceId)}`}>{r.deviceId}</a></td><td>{r.what}</td><td><code>{r.code}</code></td></tr>
                    ))}
                  </tbody>
                </table>
              )}
            </Section>
          </div>
        </>
      )}
      <Section title="Devices" actions={
        <select value={filter} onChange={(e) => setFilter((e.target as HTMLSelectElement).value as DeviceStatus | '')} aria-label="status filter">
          <option value="">all statuses</option>
          {STATUSES.map((st) => <option key={st} value={st}>{st}</option>)}
        </select>
      }>
        {!devices.data ? <Loading /> : devices.data.length === 0 ? <Empty>No devices.</Empty> : (
          <table data-testid="device-table">
            <thead><tr><th>device</th><th>status</th><th>online</th><th>tags</th><th>manifest counter</th><th>last seen</th></tr></thead>
            <tbody>
              {devices.data.map((d) => (
                <tr key={d.id}>
                  <td><a href={`#/devices/${encodeURIComponent(d.id)}`}>{d.id}</a></td>
                  <td><Badge status={d.status} /></td>
                  <td><Online online={d.online} /></td>
                  <td>{d.tags.map((t) => <span class="tag" key={t}>{t}</span>)}</td>
                  <td>{d.manifestCounter < 0 ? <span class="muted">none</span> : d.manifestCounter}</td>
                  <td><Time at={d.lastSeen} /></td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Section>
    </div>
  );
}
