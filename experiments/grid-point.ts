/**
 * One grid point, run in its own process by experiments/grid.ts:
 *   grid-point.ts <experiment> '<point json>' <runs dir> [common options]
 */
import { Command } from 'commander';
import { installStopHandlers } from '../src/train/stop';
import { addCommonOptions } from './cli-options';
import { type CommonOptions, prepare, trainRuns } from './common';
import { exitWithError } from './errors';
import { describeChoice, type GridPoint, pointId } from './grid';

async function main(argv: string[]) {
  const program = new Command('grid-point');
  program.exitOverride();
  addCommonOptions(program.arguments('<experiment> <point> <dir>')).action(
    async (name: string, pointJson: string, dir: string, o: CommonOptions) => {
      installStopHandlers();
      const p = await prepare(name, o);
      const point = JSON.parse(pointJson) as GridPoint;
      const run = p.experiment.gridRun!(p.profile, point);
      const id = pointId(point);
      const [s] = await trainRuns(p, [{ ...run, run: id, label: `${run.label} ${describeChoice(point)}` }], dir, { gridPoint: point });
      if (s.status !== 'finished') process.exitCode = 1;
    },
  );
  await program.parseAsync(argv, { from: 'user' });
}

main(process.argv.slice(2)).catch(exitWithError);
