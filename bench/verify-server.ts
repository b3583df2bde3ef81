/**
 * bench/verify.ts helper, run as a process of its own session (forked detached, so
 * setsid): serves a repository's files (sent once over IPC) with the tests' static
 * server. It stands for the repository on another machine: in the bench's own
 * process, every request it answers would take the event loop from whichever client
 * is being timed, adding the same few milliseconds to both sides of each ratio.
 * Answers its first message ({ files: [path, bytes][] }) with { url }.
 */
import { serveFiles } from '../test/interop/static-server.ts';

process.once('message', async ({ files }: { files: Array<[string, Uint8Array]> }) => {
  const server = await serveFiles(new Map(files));
  process.send!({ url: server.url });
});
process.on('disconnect', () => process.exit(0));
