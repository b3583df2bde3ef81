/**
 * The console's only way to the director: the same admin API the CLI uses, with
 * the session cookie (sent by the browser) and, on every request that changes
 * something, the session's CSRF token in X-Upfleet-CSRF. Live updates come from
 * one EventSource on /api/v1/admin/events/stream; pages reload what they show
 * when it reports a change.
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import type { FleetChange } from '@upfleet/director/admin-records.ts';

export type Role = 'operator' | 'viewer';

export interface Session {
  role: Role;
  csrfToken: string;
  expires: number;
}

export class ApiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

let csrfToken: string | undefined;
/** Called when a request finds the session gone (401), so the app shows the login form. */
let onSessionLost: () => void = () => {};

export function setSessionHandlers(session: Session | undefined, lost: () => void): void {
  csrfToken = session?.csrfToken;
  onSessionLost = lost;
}

/** @throws ApiError with the director's error code and message */
export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && csrfToken) headers['x-upfleet-csrf'] = csrfToken;
  const res = await fetch(`/api/v1${path}`, {
    method, headers, credentials: 'same-origin', ...(body !== undefined && { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  const json = text ? JSON.parse(text) : undefined;
  if (!res.ok) {
    if (res.status === 401 && !path.startsWith('/console/')) onSessionLost();
    throw new ApiError(res.status, json?.error?.code ?? `HTTP_${res.status}`, json?.error?.message ?? res.statusText);
  }
  return json as T;
}

type ChangeListener = (change: FleetChange) => void;
const listeners = new Set<ChangeListener>();
let source: EventSource | undefined;
let connected = false;
const connectionListeners = new Set<(connected: boolean) => void>();

function setConnected(value: boolean): void {
  connected = value;
  for (const l of connectionListeners) l(value);
}

/** Opens the change stream (once per login); the browser reconnects by itself after a drop. */
export function openChangeStream(): void {
  if (source) return;
  source = new EventSource('/api/v1/admin/events/stream');
  // `ready` also follows every reconnect: what changed meanwhile is unknown, so everyone reloads.
  source.addEventListener('ready', () => {
    setConnected(true);
    for (const l of listeners) l({ devices: [], assignments: [], campaigns: [] });
  });
  source.addEventListener('change', (e) => {
    const change = JSON.parse((e as MessageEvent<string>).data) as FleetChange;
    for (const l of listeners) l(change);
  });
  source.addEventListener('error', () => setConnected(false));
}

export function closeChangeStream(): void {
  source?.close();
  source = undefined;
  setConnected(false);
}

export function useStreamConnected(): boolean {
  const [value, setValue] = useState(connected);
  useEffect(() => {
    connectionListeners.add(setValue);
    return () => void connectionListeners.delete(setValue);
  }, []);
  return value;
}

export interface Live<T> {
  data: T | undefined;
  error: ApiError | undefined;
  reload: () => void;
}

/**
 * Loads `load()` now, again when `key` changes, and again on every change the
 * stream reports (`relevant` filters them). Loads never overlap: a change that
 * arrives during a load schedules one more.
 */
export function useLive<T>(load: () => Promise<T>, key: string, relevant: (c: FleetChange) => boolean = () => true): Live<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<ApiError | undefined>(undefined);
  const state = useRef({ running: false, again: false, load, relevant, alive: true });
  state.current.load = load;
  state.current.relevant = relevant;

  const run = () => {
    const s = state.current;
    if (s.running) {
      s.again = true;
      return;
    }
    s.running = true;
    s.load().then(
      (d) => s.alive && (setData(d), setError(undefined)),
      (e: unknown) => s.alive && setError(e instanceof ApiError ? e : new ApiError(0, 'NETWORK', String(e))),
    ).finally(() => {
      s.running = false;
      if (s.again && s.alive) {
        s.again = false;
        run();
      }
    });
  };

  useEffect(() => {
    state.current.alive = true;
    setData(undefined);
    run();
    const listener = (c: FleetChange) => {
      if (c.devices.length + c.assignments.length + c.campaigns.length === 0 || state.current.relevant(c)) run();
    };
    listeners.add(listener);
    return () => {
      state.current.alive = false;
      listeners.delete(listener);
    };
  }, [key]);

  return { data, error, reload: run };
}
