/** One campaign: start, pause, resume, abort; live progress per wave and per device (each ECU's download and flash). */
import { api, useLive } from '../api.ts';
import { ActionButton, Badge, Empty, ErrorBox, Loading, ProgressBar, Section, Time } from '../components.tsx';
import type { CampaignDetail, CampaignDeviceView } from '@upfleet/director/admin-records.ts';

const STATES = ['waiting', 'pending', 'downloading', 'installing', 'succeeded', 'failed', 'cancelled'] as const;

export function CampaignPage({ id }: { id: string }) {
  const path = `/admin/campaigns/${encodeURIComponent(id)}`;
  const c = useLive(() => api<CampaignDetail>('GET', path), `campaign:${id}`,
    (ch) => ch.campaigns.includes(id) || ch.assignments.length > 0);
  const data = c.data;
  if (c.error && !data) return <div><h1>Campaign</h1><ErrorBox error={c.error} /></div>;
  if (!data) return <Loading />;
  const act = (action: string) => () => api('POST', `${path}/${action}`).then(c.reload);
  const s = data.status;
  const devices = data.deviceStatus;
  return (
    <div>
      <h1>Campaign {data.spec.name} <span data-testid="campaign-status"><Badge status={s} /></span></h1>
      <p class="muted">
        {data.spec.images.map((i) => `${i.hardwareId} → ${i.image}`).join(', ')}
        {' · '}tags: {data.spec.tags.length ? data.spec.tags.join(', ') : 'any'}
        {' · '}waves {data.spec.waves.join('%, ')}% · gate {Math.round(data.spec.successThreshold * 100)}% · created <Time at={data.createdAt} />
      </p>
      {data.reason && <p class="note" data-testid="campaign-reason">{data.reason}</p>}
      <div class="toolbar">
        {s === 'draft' && <ActionButton label="Start" testId="campaign-start" action={act('start')} />}
        {s === 'running' && <ActionButton label="Pause" testId="campaign-pause" action={act('pause')} />}
        {(s === 'paused' || s === 'halted') && <ActionButton label={s === 'halted' ? 'Resume (override the gate)' : 'Resume'} testId="campaign-resume" action={act('resume')} />}
        {s !== 'completed' && s !== 'aborted' && <ActionButton label="Abort" danger testId="campaign-abort" action={() => (window.confirm('Abort this campaign? Pending assignments are cancelled.') ? act('abort')() : Promise.resolve())} />}
      </div>
      <ErrorBox error={c.error} />

      <div class="cards">
        {STATES.map((st) => (
          <div class="card" key={st} data-testid={`campaign-count-${st}`}><div class="card-value">{data.counts[st]}</div><div class="card-label">{st}</div></div>
        ))}
      </div>

      <Section title={`Waves (${data.currentWave} of ${data.totalWaves} launched)`}>
        {s === 'draft' ? <Empty>The group is fixed when the campaign starts.</Empty> : (
          <table data-testid="wave-table">
            <thead><tr><th>wave</th><th>up to</th><th>devices</th><th>done</th>{STATES.filter((st) => st !== 'waiting').map((st) => <th key={st}>{st}</th>)}</tr></thead>
            <tbody>
              {data.spec.waves.map((pct, i) => {
                const inWave = devices.filter((d) => d.wave === i + 1);
                const done = inWave.filter((d) => d.status === 'succeeded' || d.status === 'failed' || d.status === 'cancelled').length;
                return (
                  <tr key={i} class={i < data.currentWave ? '' : 'muted'}>
                    <td>{i + 1}{i < data.currentWave ? '' : ' (not launched)'}</td>
                    <td>{pct}%</td>
                    <td>{inWave.length}</td>
                    <td><WaveBar devices={inWave} done={done} /></td>
                    {STATES.filter((st) => st !== 'waiting').map((st) => <td key={st}>{inWave.filter((d) => d.status === st).length}</td>)}
                  </tr>
                );
              })}
            </tbody>
          </table>
        )}
      </Section>

      <Section title="Devices">
        {devices.length === 0 ? <Empty>{s === 'draft' ? 'Not started.' : 'No device matched the campaign.'}</Empty> : (
          <table data-testid="campaign-devices">
            <thead><tr><th>device</th><th>wave</th><th>status</th><th>per-ECU progress</th><th>error</th><th>updated</th></tr></thead>
            <tbody>
              {devices.map((d) => (
                <tr key={d.deviceId} data-testid={`campaign-device-${d.deviceId}`}>
                  <td><a href={`#/devices/${encodeURIComponent(d.deviceId)}`}>{d.deviceId}</a></td>
                  <td>{d.wave}</td>
                  <td><Badge status={d.status} /></td>
                  <td><EcuProgressList device={d} /></td>
                  <td>{d.errorCode ? <code>{d.errorCode}</code> : ''}</td>
                  <td><Time at={d.updatedAt} /></td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Section>
    </div>
  );
}

function WaveBar({ devices, done }: { devices: CampaignDeviceView[]; done: number }) {
  const n = devices.length || 1;
  const ok = devices.filter((d) => d.status === 'succeeded').length;
  const failed = devices.filter((d) => d.status === 'failed' || d.status === 'cancelled').length;
  return (
    <span class="progress" title={`${done} of ${devices.length} done`}>
      <span class="progress-track">
        <span class="progress-fill progress-succeeded" style={{ width: `${(ok * 100) / n}%` }} />
        <span class="progress-fill progress-failed" style={{ width: `${(failed * 100) / n}%` }} />
      </span>
      <span class="small">{done}/{devices.length}</span>
    </span>
  );
}

function EcuProgressList({ device }: { device: CampaignDeviceView }) {
  const entries = Object.entries(device.progress ?? {});
  if (entries.length === 0) return <span class="muted">-</span>;
  return (
    <div class="ecu-progress">
      {entries.map(([serial, p]) => (
        <div key={serial}><span class="small">{serial}</span> <ProgressBar progress={p} testId={`progress-${device.deviceId}-${serial}`} /></div>
      ))}
    </div>
  );
}
