/**
 * The Upfleet web console: a login form, then the pages behind hash routes
 * (#/ fleet, #/devices/ID, #/images, #/campaigns, #/campaigns/ID). Hash routes
 * keep the director's job to two files: `/` and its hashed assets.
 */
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, closeChangeStream, openChangeStream, setSessionHandlers, useStreamConnected, type Session } from './api.ts';
import { ErrorBox, RoleContext } from './components.tsx';
import { FleetPage } from './pages/fleet.tsx';
import { DevicePage } from './pages/device.tsx';
import { ImagesPage } from './pages/images.tsx';
import { CampaignsPage } from './pages/campaigns.tsx';
import { CampaignPage } from './pages/campaign.tsx';
import './style.css';

function useHashRoute(): string[] {
  const parse = () => location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  const [route, setRoute] = useState(parse);
  useEffect(() => {
    const on = () => setRoute(parse());
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return route;
}

function Page({ route }: { route: string[] }) {
  const [first, second] = route;
  if (first === 'devices' && second) return <DevicePage id={second} />;
  if (first === 'images') return <ImagesPage />;
  if (first === 'campaigns' && second) return <CampaignPage id={second} />;
  if (first === 'campaigns') return <CampaignsPage />;
  return <FleetPage />;
}

function Login({ onLogin }: { onLogin: (s: Session) => void }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState<Error | undefined>(undefined);
  const submit = async (e: Event) => {
    e.preventDefault();
    setError(undefined);
    try {
      onLogin(await api<Session>('POST', '/console/login', { token }));
    } catch (err) {
      setError(err as Error);
    }
  };
  return (
    <main class="login">
      <h1>Upfleet console</h1>
      <form class="form" onSubmit={submit}>
        <label>Admin or viewer token
          <input type="password" name="token" autocomplete="current-password" required value={token} onInput={(e) => setToken((e.target as HTMLInputElement).value)} />
        </label>
        <button type="submit">Log in</button>
        <ErrorBox error={error} />
      </form>
    </main>
  );
}

function App() {
  const [session, setSession] = useState<Session | null | undefined>(undefined);
  const route = useHashRoute();
  const live = useStreamConnected();

  useEffect(() => {
    api<Session>('GET', '/console/session').then(setSession, (e: unknown) => {
      if (!(e instanceof ApiError) || e.status !== 401) console.error(e);
      setSession(null);
    });
  }, []);
  useEffect(() => {
    setSessionHandlers(session ?? undefined, () => setSession(null));
    if (session) openChangeStream();
    else closeChangeStream();
  }, [session]);

  if (session === undefined) return null;
  if (session === null) return <Login onLogin={setSession} />;
  const logout = async () => {
    await api('POST', '/console/logout').catch(() => undefined);
    setSession(null);
  };
  const nav = (href: string, label: string, active: boolean) => <a href={href} class={active ? 'active' : ''}>{label}</a>;
  return (
    <RoleContext.Provider value={session.role}>
      <header>
        <span class="brand">Upfleet</span>
        <nav>
          {nav('#/', 'Fleet', !route[0] || route[0] === 'devices')}
          {nav('#/images', 'Images', route[0] === 'images')}
          {nav('#/campaigns', 'Campaigns', route[0] === 'campaigns')}
        </nav>
        <span class="spacer" />
        <span class={live ? 'live live-on' : 'live'} data-testid="live" title="live updates from the director">{live ? 'live' : 'connecting…'}</span>
        <span class="role" data-testid="role">{session.role}</span>
        <button type="button" class="link" onClick={logout}>Log out</button>
      </header>
      <main><Page route={route} /></main>
    </RoleContext.Provider>
  );
}

render(<App />, document.getElementById('app')!);
