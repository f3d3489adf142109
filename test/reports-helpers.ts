/** Test helper: the same SYNTHETIC runs repeated as seeds of their lines (sidecar seed and group, `-s<seed>` run ids). */
import type { LoadedRun } from '../reports/types';

export function asSeeds(runs: LoadedRun[], seeds: number[] = [1, 2, 3]): LoadedRun[] {
  return seeds.flatMap((seed) =>
    runs.map((r) => ({ ...r, sidecar: { ...r.sidecar, run: `${r.sidecar.run}-s${seed}`, group: r.sidecar.run, seed } })),
  );
}
