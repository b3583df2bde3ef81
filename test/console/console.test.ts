/**
 * The web console in headless Chromium, against a real director with an image
 * repository and two simulated vehicles (in-process agents over HTTP). Images
 * reach the vehicles through a loopback proxy that trickles them, so a download
 * lasts a few seconds and the console has time to show it; the vehicles' agents
 * reach the director through a proxy that keeps their manifests, so the test can
 * replay one. One browser for the file; a context per role.
 *
 * With UPFLEET_SCREENSHOTS=DIR (`npm run screenshots`), each page is captured
 * into DIR at the moment the test checks it.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { Browser, Page } from 'playwright-core';
import { ensureConsoleBuilt } from '../../scripts/build-console.mjs';
import { ADMIN_TOKEN, Stack, VIEWER_TOKEN } from '../support/stack.ts';
import { Vehicle } from '../support/vehicle.ts';
import { AttackProxy } from '../support/proxy.ts';
import { launchChromium, newPage, screenshot } from '../support/browser.ts';

const IMAGE_BYTES = 1536 * 1024;
const TRICKLE_BYTES_PER_SECOND = 600_000;

interface PageElement { dataset: Record<string, string | undefined>; textContent: string | null }
/**
 * Runs in the page (a function, not a string: the console's CSP forbids eval): the
 * first per-ECU progress bar strictly between 0 and 100 %, with the campaign's status
 * at that moment. The test's tsconfig has no DOM types, hence the narrow cast.
 */
function intermediateProgress() {
  const doc = (globalThis as unknown as { document: { querySelectorAll(s: string): Iterable<PageElement>; querySelector(s: string): PageElement | null } }).document;
  const bar = [...doc.querySelectorAll('[data-testid^="progress-"][data-percent]')].find((b) => Number(b.dataset.percent) > 0 && Number(b.dataset.percent) < 100);
  if (!bar) return undefined;
  return { testId: bar.dataset.testid!, phase: bar.dataset.phase!, percent: Number(bar.dataset.percent), status: doc.querySelector('[data-testid="campaign-status"]')?.textContent };
}
const DEVICES = ['console-1', 'console-2'];

describe('web console', () => {
  let stack: Stack;
  let imageProxy: AttackProxy;
  let directorProxy: AttackProxy;
  const vehicles: Vehicle[] = [];
  let browser: Browser;
  let operator: Awaited<ReturnType<typeof newPage>>;

  /** One update cycle of every vehicle at once. */
  const cycleAll = () => Promise.all(vehicles.map((v) => v.agent!.checkOnce()));

  const login = async (page: Page, token: string, role: string) => {
    await page.goto('/');
    await page.fill('input[name=token]', token);
    await page.click('button[type=submit]');
    await page.getByTestId('role').filter({ hasText: role }).waitFor();
    await page.getByTestId('live').filter({ hasText: 'live' }).waitFor();
  };

  const campaignStatus = (page: Page, status: string) => page.getByTestId('campaign-status').filter({ hasText: new RegExp(`^${status}$`) }).waitFor();

  /** Creates a draft through the console's form; returns its ID (from the page it lands on). */
  const createInForm = async (page: Page, spec: { name: string; image: string; waves: string }) => {
    await page.goto('/#/campaigns');
    const form = page.getByTestId('campaign-form');
    await form.locator('select[name=images] option', { hasText: spec.image }).first().waitFor();
    await form.locator('input[name=name]').fill(spec.name);
    await form.locator('select[name=images]').selectOption(`gateway=${spec.image}`);
    await form.locator('input[name=waves]').fill(spec.waves);
    await form.locator('input[name=threshold]').fill('1');
    await form.locator('button[type=submit]').click();
    await page.waitForURL(/#\/campaigns\/[0-9a-f-]{36}$/);
    await campaignStatus(page, 'draft');
    return page.url().split('/').at(-1)!;
  };

  /** A fetch from inside the page: same origin, so the browser sends the session cookie. */
  const pageFetch = (page: Page, path: string, headers: Record<string, string>) =>
    page.evaluate(async ({ path, headers }) => {
      const res = await fetch(path, { method: 'POST', headers });
      return { status: res.status, body: await res.json() as { error?: { code: string } } };
    }, { path, headers });

  const sessionCsrf = (page: Page) => page.evaluate(async () => ((await (await fetch('/api/v1/console/session')).json()) as { csrfToken: string }).csrfToken);

  let launching: Promise<Browser> | undefined;
  before(async () => {
    assert.notEqual(ensureConsoleBuilt({ quiet: true }), 'no-vite', 'Vite is a dev dependency: npm ci installs it');
    launching = launchChromium(); // starts while the back end does
    stack = await Stack.start({ mqtt: 'none' });
    imageProxy = await new AttackProxy(stack.imageRepo.url).start();
    imageProxy.on('/targets/', { kind: 'trickle', bytesPerSecond: TRICKLE_BYTES_PER_SECOND });
    directorProxy = await new AttackProxy(stack.director.url).start();
    vehicles.push(...await Promise.all(DEVICES.map((deviceId) =>
      Vehicle.create(stack, { deviceId, imageRepoUrl: imageProxy.url, directorUrl: directorProxy.url, progressIntervalSeconds: 0.25 }))));
    await cycleAll(); // first manifests: the director knows what every ECU runs
    await stack.addSupplier('acme', ['acme/*'], ['door-ecu']);
    await stack.publish({ name: 'acme/door-1.1.0.bin', data: randomBytes(20_000), hardwareIds: ['door-ecu'], version: '1.1.0', releaseCounter: 1, supplier: 'acme' });
    await stack.publish({ name: 'gateway-2.0.0.bin', data: randomBytes(IMAGE_BYTES), hardwareIds: ['gateway'], version: '2.0.0', releaseCounter: 2 });
    await stack.publish({ name: 'gateway-3.0.0.bin', data: randomBytes(IMAGE_BYTES), hardwareIds: ['gateway'], version: '3.0.0', releaseCounter: 3 });
    browser = await launching;
    operator = await newPage(browser, stack.director.url);
  });
  after(async () => {
    await (await launching?.catch(() => undefined))?.close();
    await Promise.all(vehicles.map((v) => v.close()));
    await imageProxy?.close();
    await directorProxy?.close();
    await stack?.close();
  });

  it('logs an operator in with the admin token into an HttpOnly, SameSite=Strict session cookie', async () => {
    await operator.goto('/');
    await operator.locator('input[name=token]').waitFor();
    await screenshot(operator, 'login');
    await login(operator, ADMIN_TOKEN, 'operator');
    const [cookie] = await operator.context().cookies();
    assert.equal(cookie?.name, 'upfleet_session');
    assert.equal(cookie.httpOnly, true);
    assert.equal(cookie.sameSite, 'Strict');
    assert.equal(await operator.evaluate('document.cookie'), '', 'scripts cannot read the session cookie');
  });

  it('creates and starts a campaign, and shows per-ECU download progress live until it completes', async () => {
    const id = await createInForm(operator, { name: 'gateway 2.0.0', image: 'gateway-2.0.0.bin', waves: '100' });
    await operator.getByTestId('campaign-start').click();
    await campaignStatus(operator, 'running');

    // Watch the page (no reloads: the change stream drives it) while the vehicles update.
    const intermediate = operator.waitForFunction(intermediateProgress, undefined, { polling: 50, timeout: 30_000 });
    const cycles = cycleAll();
    const seen = (await intermediate.then((h) => h.jsonValue()))!;
    await screenshot(operator, 'campaign-live');
    const outcomes = await cycles;
    assert.deepEqual(outcomes.map((o) => o.result), ['success', 'success'], JSON.stringify(outcomes));
    assert.equal(seen.phase, 'downloading');
    assert.ok(seen.percent > 0 && seen.percent < 100);
    assert.match(seen.testId, /^progress-console-\d-console-\d-gw$/);
    assert.equal(seen.status, 'running', 'the intermediate value was shown before the campaign completed');

    await campaignStatus(operator, 'completed');
    await operator.getByTestId('campaign-count-succeeded').filter({ hasText: '2' }).waitFor();
    const api = await stack.admin('GET', `/campaigns/${id}`);
    assert.equal(api.json.status, 'completed');
    imageProxy.clear(); // the later tests need no slow downloads
  });

  it('pauses a campaign after its first wave is launched, and resumes it to the end', async () => {
    const id = await createInForm(operator, { name: 'gateway 3.0.0', image: 'gateway-3.0.0.bin', waves: '50,100' });
    await operator.getByTestId('campaign-start').click();
    await campaignStatus(operator, 'running');
    await operator.getByTestId('campaign-pause').click();
    await campaignStatus(operator, 'paused');

    // Paused: wave 1's device updates, wave 2 is not launched.
    await cycleAll();
    await operator.getByTestId('campaign-count-succeeded').filter({ hasText: /^1succeeded$/ }).waitFor();
    await operator.getByTestId('campaign-count-waiting').filter({ hasText: /^1waiting$/ }).waitFor();
    assert.equal((await stack.admin('GET', `/campaigns/${id}`)).json.status, 'paused');
    await screenshot(operator, 'campaign-paused');

    await operator.getByTestId('campaign-resume').click();
    await campaignStatus(operator, 'running');
    await cycleAll();
    await campaignStatus(operator, 'completed');
    await operator.getByTestId('campaign-count-succeeded').filter({ hasText: /^2succeeded$/ }).waitFor();
    await operator.goto('/#/campaigns');
    await operator.getByTestId('campaign-table').filter({ hasText: 'gateway 3.0.0' }).waitFor();
    await screenshot(operator, 'campaigns');
  });

  it('shows a refused (replayed) manifest as a security event on the device page', async () => {
    const [first] = directorProxy.posts.filter((p) => p.path.endsWith('/console-1/manifest'));
    assert.ok(first, 'the agent sent its manifests through the proxy');
    const replay = await fetch(`${stack.director.url}/api/v1/devices/console-1/manifest`, {
      method: 'POST', body: first.body, headers: { 'content-type': 'application/json', authorization: first.headers.authorization as string },
    });
    assert.equal(replay.status, 409);

    await operator.goto('/#/');
    await operator.getByText('MANIFEST_REPLAY').first().waitFor();
    await operator.getByTestId('device-table').getByText('console-1').waitFor();
    await screenshot(operator, 'fleet');
    await operator.getByTestId('device-table').getByRole('link', { name: 'console-1' }).click();
    await operator.getByTestId('device-id').filter({ hasText: 'console-1' }).waitFor();
    const event = operator.getByTestId('event-table').locator('tr', { hasText: 'MANIFEST_REPLAY' });
    await event.waitFor();
    assert.match(await event.innerText(), /manifest_refused/);
    await operator.getByTestId('ecu-table').getByText('gateway-3.0.0.bin').waitFor();
    await operator.getByTestId('manifest-table').waitFor();
    await screenshot(operator, 'device');
  });

  it('lists the image repository with hardware IDs, versions, release counters and the signing role', async () => {
    await operator.goto('/#/images');
    const table = operator.getByTestId('image-table');
    const gateway = table.locator('tr', { hasText: 'gateway-2.0.0.bin' });
    await gateway.waitFor();
    assert.match(await gateway.innerText(), /gateway\s+2\.0\.0\s+2\s+1\.5 MiB\s+[0-9a-f]{12}\s+targets \(top level\)/);
    const supplier = table.locator('tr', { hasText: 'acme/door-1.1.0.bin' });
    assert.match(await supplier.innerText(), /door-ecu\s+1\.1\.0\s+1\s+.*\s+acme$/);
    await screenshot(operator, 'images');
  });

  describe('with a draft campaign', () => {
    let draft: string;
    before(async () => {
      const r = await stack.admin('POST', '/campaigns', { name: 'draft for roles', images: [{ hardwareId: 'gateway', image: 'gateway-3.0.0.bin' }] });
      assert.equal(r.status, 201);
      draft = r.json.id;
    });

    it('lets a viewer see the campaign but press no state-changing button, and the API refuses it (403)', async () => {
      const viewer = await newPage(browser, stack.director.url);
      try {
        await login(viewer, VIEWER_TOKEN, 'viewer');
        await viewer.goto(`/#/campaigns/${draft}`);
        await campaignStatus(viewer, 'draft');
        assert.equal(await viewer.getByTestId('campaign-start').isDisabled(), true);
        assert.equal(await viewer.getByTestId('campaign-abort').isDisabled(), true);
        await screenshot(viewer, 'campaign-viewer');
        await viewer.goto('/#/campaigns');
        assert.equal(await viewer.getByTestId('campaign-form').locator('button[type=submit]').isDisabled(), true);
        assert.equal(await viewer.getByTestId('campaign-form').locator('input[name=name]').isDisabled(), true);

        const csrf = await sessionCsrf(viewer);
        const r = await pageFetch(viewer, `/api/v1/admin/campaigns/${draft}/start`, { 'x-upfleet-csrf': csrf });
        assert.equal(r.status, 403);
        assert.equal(r.body.error?.code, 'READ_ONLY_ROLE');
        const bearer = await fetch(`${stack.director.url}/api/v1/admin/campaigns/${draft}/start`, { method: 'POST', headers: { authorization: `Bearer ${VIEWER_TOKEN}` } });
        assert.equal(bearer.status, 403);
        assert.equal((await stack.admin('GET', `/campaigns/${draft}`)).json.status, 'draft', 'nothing changed');
        assert.deepEqual(viewer.problems, []);
      } finally {
        await viewer.context().close();
      }
    });

    it('refuses a state change made with the session cookie but without the CSRF token', async () => {
      const missing = await pageFetch(operator, `/api/v1/admin/campaigns/${draft}/abort`, {});
      assert.equal(missing.status, 403);
      assert.equal(missing.body.error?.code, 'CSRF_TOKEN_MISSING');
      const wrong = await pageFetch(operator, `/api/v1/admin/campaigns/${draft}/abort`, { 'x-upfleet-csrf': 'not-the-token' });
      assert.equal(wrong.status, 403);
      assert.equal(wrong.body.error?.code, 'BAD_CSRF_TOKEN');
      assert.equal((await stack.admin('GET', `/campaigns/${draft}`)).json.status, 'draft', 'nothing changed');
      const right = await pageFetch(operator, `/api/v1/admin/campaigns/${draft}/abort`, { 'x-upfleet-csrf': await sessionCsrf(operator) });
      assert.equal(right.status, 200, 'the same request with the token goes through');
    });

    it('ran every page without a script error or a Content-Security-Policy violation', () => {
      assert.deepEqual(operator.problems, []);
    });
  });
});
