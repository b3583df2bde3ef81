/**
 * What an ECU reports it runs (an ECU version report's installedImage). A module
 * of its own, importing nothing, so code built without Node's types (the
 * director's web console, through director/src/admin-records.ts) can name it.
 */
export interface InstalledImage {
  filename: string;
  length: number;
  hashes: Record<string, string>;
}
