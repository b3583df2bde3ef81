// Entry of a verify worker (verify-pool.ts). Plain JavaScript imported by package name, so
// import.meta here names this directory even when the director runs from a bundle
// (scripts/launch.mjs). In a worker it loads verify-thread.ts: directly when the parent's
// --import tsx was inherited, else through tsx's loader.
import { workerData } from 'node:worker_threads';

export const threadUrl = new URL(import.meta.url);

if (workerData?.upfleetVerifyThread === true) {
  try {
    await import('./verify-thread.ts');
  } catch (error) {
    if (error?.code !== 'ERR_UNKNOWN_FILE_EXTENSION') throw error;
    const { register } = await import('tsx/esm/api');
    register();
    // Another specifier: the failed load above stays cached under the plain one.
    await import('./verify-thread.ts?tsx');
  }
}
