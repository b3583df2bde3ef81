/** What the image repository lists (verified by the director): hardware IDs, versions, release counters, the signing role. */
import { useState } from 'preact/hooks';
import { api, useLive } from '../api.ts';
import { bytes, Empty, ErrorBox, Loading, shortHash } from '../components.tsx';
import type { ImageView } from '@upfleet/director/admin-records.ts';

export function ImagesPage() {
  // The image repository is not in the change stream: reload on demand.
  const images = useLive(() => api<{ images: ImageView[] }>('GET', '/admin/images').then((r) => r.images), 'images', () => false);
  const [hw, setHw] = useState('');
  const all = images.data ?? [];
  const hardwareIds = [...new Set(all.flatMap((i) => i.hardwareIds))].sort();
  const shown = hw ? all.filter((i) => i.hardwareIds.includes(hw)) : all;
  return (
    <div>
      <h1>Images</h1>
      <div class="toolbar">
        <select value={hw} onChange={(e) => setHw((e.target as HTMLSelectElement).value)} aria-label="hardware ID filter">
          <option value="">all hardware IDs</option>
          {hardwareIds.map((h) => <option key={h} value={h}>{h}</option>)}
        </select>
        <button type="button" onClick={images.reload}>Refresh</button>
      </div>
      <ErrorBox error={images.error} />
      {!images.data ? (images.error ? null : <Loading />) : shown.length === 0 ? <Empty>The image repository lists no images.</Empty> : (
        <table data-testid="image-table">
          <thead><tr><th>name</th><th>hardware IDs</th><th>version</th><th>release counter</th><th>size</th><th>sha256</th><th>signed by</th></tr></thead>
          <tbody>
            {shown.map((i) => (
              <tr key={i.name}>
                <td>{i.name}</td>
                <td>{i.hardwareIds.map((h) => <span class="tag" key={h}>{h}</span>)}</td>
                <td>{i.version ?? '-'}</td>
                <td>{i.releaseCounter ?? '-'}</td>
                <td>{bytes(i.length)}</td>
                <td><code>{shortHash(i.hashes)}</code></td>
                <td>{i.role === 'targets' ? 'targets (top level)' : <span class="tag signer">{i.role}</span>}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}
