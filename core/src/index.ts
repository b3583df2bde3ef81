export * from './errors.ts';
export * from './bytes.ts';
export * from './canonical-json.ts';
export * from './hash.ts';
export * from './keys.ts';
export * from './key-files.ts';
export * from './metadata/index.ts';
export * from './uptane/index.ts';
