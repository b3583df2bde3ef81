/** Small pieces every page uses: status badges, progress bars, times, sizes, action buttons, errors. */
import { createContext, type ComponentChildren } from 'preact';
import { useContext, useState } from 'preact/hooks';
import { ApiError, type Role } from './api.ts';
import type { EcuProgress } from '@upfleet/director/admin-records.ts';

export const RoleContext = createContext<Role>('viewer');

export function Badge({ status }: { status: string }) {
  return <span class={`badge badge-${status}`}>{status}</span>;
}

export function Online({ online }: { online: boolean }) {
  return <span class={online ? 'dot dot-on' : 'dot dot-off'} title={online ? 'online' : 'offline'}>{online ? 'online' : 'offline'}</span>;
}

/** Binary units, named as such (1 MiB = 1024 KiB). */
export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

export function Time({ at }: { at: string | null | undefined }) {
  if (!at) return <span class="muted">-</span>;
  const d = new Date(at);
  return <time dateTime={at} title={at}>{d.toLocaleString()}</time>;
}

export function percent(p: EcuProgress): number {
  return p.total === 0 ? 100 : Math.floor((p.done * 100) / p.total);
}

/** One ECU's latest progress: its phase, a bar and the percentage. */
export function ProgressBar({ progress, testId }: { progress: EcuProgress | undefined; testId?: string }) {
  if (!progress) return <span class="muted" data-testid={testId}>no progress yet</span>;
  const pct = percent(progress);
  return (
    <span class="progress" data-testid={testId} data-phase={progress.phase} data-percent={pct}>
      <span class="progress-label">{progress.phase} {pct}%</span>
      <span class="progress-track"><span class={`progress-fill progress-${progress.phase}`} style={{ width: `${pct}%` }} /></span>
      <span class="muted small">{bytes(progress.done)} of {bytes(progress.total)}</span>
    </span>
  );
}

export function ErrorBox({ error }: { error: ApiError | Error | undefined }) {
  if (!error) return null;
  const code = error instanceof ApiError ? `${error.code}: ` : '';
  return <div class="error" role="alert">{code}{error.message}</div>;
}

export function Loading() {
  return <p class="muted">Loading…</p>;
}

/**
 * A button that changes state through the admin API. The viewer role sees it
 * disabled (the director would answer 403 READ_ONLY_ROLE anyway); a refusal is
 * shown next to it.
 */
export function ActionButton({ label, action, danger, testId }: { label: string; action: () => Promise<unknown>; danger?: boolean; testId?: string }) {
  const role = useContext(RoleContext);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Error | undefined>(undefined);
  const readOnly = role !== 'operator';
  const click = async () => {
    setBusy(true);
    setError(undefined);
    try {
      await action();
    } catch (e) {
      setError(e as Error);
    } finally {
      setBusy(false);
    }
  };
  return (
    <span class="action">
      <button type="button" class={danger ? 'danger' : ''} disabled={busy || readOnly} title={readOnly ? 'read-only: the viewer role cannot change anything' : undefined} onClick={click} data-testid={testId}>{label}</button>
      <ErrorBox error={error} />
    </span>
  );
}

export function Section({ title, children, actions }: { title: string; children: ComponentChildren; actions?: ComponentChildren }) {
  return (
    <section>
      <div class="section-head"><h2>{title}</h2>{actions}</div>
      {children}
    </section>
  );
}

export function Empty({ children }: { children: ComponentChildren }) {
  return <p class="muted empty">{children}</p>;
}

export function shortHash(hashes: Record<string, string>): string {
  const h = hashes.sha256 ?? Object.values(hashes)[0] ?? '';
  return h.slice(0, 12);
}
