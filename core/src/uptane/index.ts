export * from './signed-document.ts';
export * from './ecu-report.ts';
export * from './vehicle-manifest.ts';
export * from './matching.ts';
export * from './device-token.ts';
export * from './director-targets.ts';
export * from './plan.ts';
export * from './ecu-verification.ts';
