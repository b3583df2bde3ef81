/**
 * Waiting for the machine to go down after an installer asked for (or saw) a
 * restart: the RAUC installer after its reboot command, the install handler
 * after its `activate` step was killed by the shutdown.
 *
 * Invariants:
 * - `requested` resolves once the wait begins, so the agent can stop without
 *   waiting for the step (the step never settles in this boot).
 * - Without the stop (`close`) within the timeout, the wait fails with an
 *   InstallError: the machine did not restart.
 */
import { InstallError } from '../errors.ts';

export class MachineRestart {
  /** Resolves once a restart is expected and the installer waits for the machine to go down. */
  readonly requested: Promise<void>;
  #resolveRequested!: () => void;
  #stopWaiting: (() => void) | undefined;

  constructor(private readonly ecuSerial: string) {
    this.requested = new Promise((resolve) => (this.#resolveRequested = resolve));
  }

  /** Waits for the machine to stop this process. @throws InstallError (phase `reboot`) after `timeoutSeconds` */
  wait(why: string, timeoutSeconds: number): Promise<never> {
    this.#resolveRequested();
    return new Promise<never>((_, reject) => {
      const timer = setTimeout(() => {
        this.#stopWaiting = undefined;
        reject(new InstallError(this.ecuSerial, 'reboot', `the machine did not restart within ${timeoutSeconds} s of ${why}`));
      }, timeoutSeconds * 1000);
      // On close the wait ends without settling: the cycle must not go on in this boot.
      this.#stopWaiting = () => clearTimeout(timer);
    });
  }

  close(): void {
    this.#stopWaiting?.();
  }
}
