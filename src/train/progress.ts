/** A progress bar with ETA on stderr (plain periodic lines when stderr is not a terminal). */
import cliProgress from 'cli-progress';

export interface Progress {
  update(value: number, fields?: Record<string, string>): void;
  stop(): void;
}

export function progressBar(label: string, total: number, unit = 'steps'): Progress {
  if (process.env.DKFAC_QUIET === '1') return { update() {}, stop() {} };
  const bar = new cliProgress.SingleBar(
    {
      format: `${label.padEnd(28).slice(0, 28)} |{bar}| {percentage}% {value}/{total} ${unit} | ETA {eta_formatted} | {info}`,
      barsize: 24,
      etaBuffer: 50,
      noTTYOutput: true,
      notTTYSchedule: 15000,
      stream: process.stderr,
      hideCursor: false,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total, 0, { info: '' });
  return {
    update: (value, fields) => bar.update(value, { info: fields ? Object.entries(fields).map(([k, v]) => `${k} ${v}`).join(' ') : '' }),
    stop: () => bar.stop(),
  };
}
