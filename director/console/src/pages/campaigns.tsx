/** Campaigns: the list, and the form that creates one (images, device filter by tags, waves, success gate). */
import { useContext, useState } from 'preact/hooks';
import { api, useLive } from '../api.ts';
import { Badge, Empty, ErrorBox, Loading, RoleContext, Section, Time } from '../components.tsx';
import type { CampaignStatusView, ImageView } from '@upfleet/director/admin-records.ts';

export function CampaignsPage() {
  const campaigns = useLive(() => api<{ campaigns: CampaignStatusView[] }>('GET', '/admin/campaigns').then((r) => r.campaigns), 'campaigns',
    (c) => c.campaigns.length > 0 || c.assignments.length > 0);
  const list = campaigns.data ? [...campaigns.data].sort((a, b) => b.createdAt.localeCompare(a.createdAt)) : undefined;
  return (
    <div>
      <h1>Campaigns</h1>
      <ErrorBox error={campaigns.error} />
      <Section title="All campaigns">
        {!list ? <Loading /> : list.length === 0 ? <Empty>No campaigns yet.</Empty> : (
          <table data-testid="campaign-table">
            <thead><tr><th>name</th><th>status</th><th>wave</th><th>devices</th><th>succeeded</th><th>failed</th><th>in progress</th><th>created</th></tr></thead>
            <tbody>
              {list.map((c) => (
                <tr key={c.id}>
                  <td><a href={`#/campaigns/${c.id}`}>{c.spec.name}</a></td>
                  <td><Badge status={c.status} /></td>
                  <td>{c.currentWave} / {c.totalWaves}</td>
                  <td>{c.devices.length}</td>
                  <td>{c.counts.succeeded}</td>
                  <td>{c.counts.failed}</td>
                  <td>{c.counts.pending + c.counts.downloading + c.counts.installing}</td>
                  <td><Time at={c.createdAt} /></td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Section>
      <CreateCampaign />
    </div>
  );
}

function CreateCampaign() {
  const role = useContext(RoleContext);
  const images = useLive(() => api<{ images: ImageView[] }>('GET', '/admin/images').then((r) => r.images), 'campaign-images', () => false);
  const [name, setName] = useState('');
  const [chosen, setChosen] = useState<string[]>([]);
  const [tags, setTags] = useState('');
  const [waves, setWaves] = useState('1,10,50,100');
  const [threshold, setThreshold] = useState('0.9');
  const [error, setError] = useState<Error | undefined>(undefined);
  const [busy, setBusy] = useState(false);
  const readOnly = role !== 'operator';
  // One option per (hardware ID, image): a campaign takes one image per hardware ID.
  const options = (images.data ?? []).flatMap((i) => i.hardwareIds.map((hw) => ({ value: `${hw}=${i.name}`, label: `${hw}: ${i.name}${i.version ? ` (${i.version}, counter ${i.releaseCounter})` : ''}` })));

  const submit = async (e: Event) => {
    e.preventDefault();
    setError(undefined);
    setBusy(true);
    try {
      const spec = {
        name: name.trim(),
        images: chosen.map((v) => ({ hardwareId: v.slice(0, v.indexOf('=')), image: v.slice(v.indexOf('=') + 1) })),
        tags: tags.split(',').map((t) => t.trim()).filter(Boolean),
        waves: waves.split(',').map((w) => Number(w.trim())),
        successThreshold: Number(threshold),
      };
      const created = await api<CampaignStatusView>('POST', '/admin/campaigns', spec);
      location.hash = `#/campaigns/${created.id}`;
    } catch (err) {
      setError(err as Error);
    } finally {
      setBusy(false);
    }
  };

  return (
    <Section title="New campaign">
      <form class="form" onSubmit={submit} data-testid="campaign-form">
        <fieldset disabled={readOnly || busy} title={readOnly ? 'read-only: the viewer role cannot create campaigns' : undefined}>
          <label>Name <input name="name" required value={name} onInput={(e) => setName((e.target as HTMLInputElement).value)} /></label>
          <label>Images (one per hardware ID)
            <select name="images" multiple size={Math.min(6, Math.max(2, options.length))}
              onChange={(e) => setChosen([...(e.target as HTMLSelectElement).selectedOptions].map((o) => o.value))}>
              {options.map((o) => <option key={o.value} value={o.value} selected={chosen.includes(o.value)}>{o.label}</option>)}
            </select>
          </label>
          <label>Device tags (all of them; empty: every active device) <input name="tags" placeholder="eu, beta" value={tags} onInput={(e) => setTags((e.target as HTMLInputElement).value)} /></label>
          <label>Waves (cumulative % of the group, ending at 100) <input name="waves" value={waves} onInput={(e) => setWaves((e.target as HTMLInputElement).value)} /></label>
          <label>Success gate (fraction of a wave that must succeed before the next) <input name="threshold" type="number" min="0" max="1" step="0.05" value={threshold} onInput={(e) => setThreshold((e.target as HTMLInputElement).value)} /></label>
          <button type="submit">Create draft</button>
        </fieldset>
        <ErrorBox error={error ?? images.error} />
      </form>
    </Section>
  );
}
