/** Options every experiment command accepts (exp:*, grid). */
import { type Command, Option } from 'commander';

export function addCommonOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--profile <name>', 'quick (this machine, minutes) or paper (the paper settings)').default('quick'))
    .addOption(
      new Option('--backend <name>', 'tfjs backend').choices(['auto', 'tfjs-node-gpu', 'tfjs-node', 'webgpu', 'wasm', 'cpu']),
    )
    .option('--data-dir <dir>', 'directory holding the dataset files (else DKFAC_DATA, system, cache, embedded)')
    .option('--download', 'allow downloading the dataset from its official source into the user cache')
    .option('--set <key=value...>', 'override a profile setting, e.g. --set examples=20000 --set sgd.lr.32=0.1')
    .option('--results <dir>', 'results root (default ./results)');
}
