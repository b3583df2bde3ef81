export * from './signed-document.ts';
export * from './ecu-report.ts';
export * from './vehicle-manifest.ts';
export * from './attack-codes.ts';
export * from './matching.ts';
export * from './device-token.ts';
