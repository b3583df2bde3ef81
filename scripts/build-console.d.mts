/** Types of build-console.mjs, for the TypeScript tests that make sure the console is built. */
export declare const consoleDir: string;
export declare function consoleBuildIsFresh(): boolean;
export declare function ensureConsoleBuilt(options?: { quiet?: boolean }): 'fresh' | 'built' | 'no-vite';
