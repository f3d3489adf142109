/**
 * Clean stops: Ctrl-C (SIGINT) or SIGTERM asks the running training loop to finish its current step, write its row
 * and sidecar (status 'stopped') and return. A second Ctrl-C exits at once.
 */
let requested: string | null = null;
let installed = false;

export function installStopHandlers(): void {
  if (installed) return;
  installed = true;
  const onSignal = (sig: NodeJS.Signals) => {
    if (requested) process.exit(130);
    requested = sig;
    process.stderr.write(`\n${sig}: stopping after the current step (again to exit at once)\n`);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

export function stopRequested(): string | null {
  return requested;
}

/** For tests: ask for a stop as a signal would. */
export function requestStop(reason = 'requested'): void {
  requested = reason;
}

export function clearStop(): void {
  requested = null;
}

/**
 * Called by training loops after each step: yields to the event loop (so timers such as the progress bar's redraw
 * outside a terminal and the signal handlers run; in-memory batches resolve as microtasks, which alone never yield)
 * and returns the reason to stop after step k, or null.
 */
export async function yieldAndCheckStop(k: number): Promise<string | null> {
  await new Promise((r) => setImmediate(r));
  return requested ? `stopped by ${requested} after step ${k}` : null;
}
