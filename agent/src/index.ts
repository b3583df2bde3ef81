/** The agent's programmatic API (demo, end-to-end tests, embedding). */
export { createAgent, resolvePassphrase, type Agent, type AgentOptions, type AgentStatus, type CycleOutcome, type EcuStatus } from './agent.ts';
export { loadConfig, parseConfig, envName, flagName, DEFAULT_LIMITS, type AgentConfig, type SecondaryEcuConfig, type PrimaryEcuConfig, type PrimaryInstaller, type RaucInstaller, type HandlerInstaller, type Limits } from './config.ts';
export type { ProgressEvent, StoredResult } from './cycle.ts';
export { ConfigError, NotProvisionedError, InstallError, HealthCheckError, BootFallbackError, DirectorRequestError, TransitionError, StateLoopError } from './errors.ts';
export { LocalInstallSecondary, type LocalInstallOptions } from './secondaries/local-install.ts';
export { RaucPrimary, type RaucPrimaryOptions, type RaucState } from './secondaries/rauc-primary.ts';
export type { Secondary, SecondaryInfo, ImageToInstall, MetadataBundle, Progress } from './secondaries/secondary.ts';
export { TABLE as TRANSITIONS, ON_POWER_LOSS } from './machine/transitions.ts';
export { STATE_NAMES, type State, type StateName } from './machine/states.ts';
