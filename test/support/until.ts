/** Polling for tests: waits until a condition holds, or fails naming what it waited for. */

/**
 * Resolves once `cond` is true (checked now, then every `everyMs`).
 * @throws Error "timed out waiting for <what>" after `ms`
 */
export async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 10_000, everyMs = 20): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
