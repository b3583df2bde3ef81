/**
 * Headless Chromium for the web console tests: Debian's `chromium` (installed by
 * scripts/system-tools.mjs) driven by playwright-core, one browser per test file
 * and one isolated context (cookies, storage) per role. Playwright gives every
 * launch a fresh temporary profile (--user-data-dir) and removes it on close.
 *
 * With UPFLEET_SCREENSHOTS=DIR, `screenshot(page, name)` writes DIR/name.png
 * (`npm run screenshots` fills docs/console/ this way); otherwise it does nothing.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';

export const CHROMIUM = process.env.UPFLEET_CHROMIUM ?? '/usr/bin/chromium';

const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

export async function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS, timeout: 30_000 });
}

/**
 * A page in a fresh context (its own cookies), with short default timeouts so a failure is
 * quick. `problems` collects uncaught script errors and Content-Security-Policy violations.
 */
export async function newPage(browser: Browser, baseURL: string): Promise<Page & { problems: string[] }> {
  const context = await browser.newContext({ baseURL, viewport: { width: 1280, height: 860 }, deviceScaleFactor: 1 });
  context.setDefaultTimeout(15_000);
  const page = Object.assign(await context.newPage(), { problems: [] as string[] });
  page.on('pageerror', (error) => page.problems.push(`uncaught: ${error.message}`));
  page.on('console', (message) => {
    if (/Content Security Policy/i.test(message.text())) page.problems.push(`CSP: ${message.text()}`);
  });
  return page;
}

export async function screenshot(page: Page, name: string): Promise<void> {
  const dir = process.env.UPFLEET_SCREENSHOTS;
  if (!dir) return;
  mkdirSync(dir, { recursive: true });
  await page.screenshot({ path: join(dir, `${name}.png`), fullPage: true });
}
