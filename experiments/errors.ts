/** CLI error reporting: known errors (bad config, bad data, usage) print one clear line and exit non-zero. */
import { CommanderError } from 'commander';

const KNOWN = new Set(['ConfigError', 'DataError', 'LinalgError', 'BackendError', 'RedisConnectError', 'TransportError', 'MessageError']);

export function exitWithError(e: unknown): never {
  if (e instanceof CommanderError) {
    // commander has already printed the usage problem
    process.exit(e.exitCode === 0 ? 0 : 2);
  }
  const err = e as Error;
  if (err && KNOWN.has(err.name)) {
    console.error(`error: ${err.message}`);
  } else {
    console.error(`error: ${err?.message ?? String(e)}`);
    if (process.env.DKFAC_DEBUG) console.error(err?.stack);
  }
  process.exit(1);
}
