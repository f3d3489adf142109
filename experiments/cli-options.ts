/** Options every experiment command accepts (exp:*, grid), and those of the distributed runtime (exp run, exp:all). */
import { type Command, Option } from 'commander';

export function addCommonOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--profile <name>', 'quick (this machine, minutes) or paper (the paper settings)').default('quick'))
    .addOption(
      new Option('--backend <name>', 'tfjs backend').choices(['auto', 'tfjs-node-gpu', 'tfjs-node', 'webgpu', 'wasm', 'cpu']),
    )
    .option('--data-dir <dir>', 'directory holding the dataset files (else DKFAC_DATA, system, cache, embedded)')
    .option('--download', 'allow downloading the dataset from its official source into the user cache')
    .addOption(
      new Option('--on-bad-image <policy>', 'image folders: an unreadable image stops the experiment naming the file (stop, the default) or is skipped and counted in the sidecar (skip)').choices(['stop', 'skip']),
    )
    .option('--set <key=value...>', 'override a profile setting, e.g. --set examples=20000 --set sgd.lr.32=0.1')
    .option('--results <dir>', 'results root (default ./results)');
}

/** What the distributed options say (see addDistOptions). */
export interface DistOptions {
  redis?: string;
  redisWait?: string;
  redisPrefix?: string;
  redisTlsCa?: string;
  network?: string;
}

export function addDistOptions(cmd: Command): Command {
  return cmd
    .option('--redis <url>', 'run every remote-capable role on the worker processes connected to this Redis (redis://host:port, rediss:// for TLS; npm run worker)')
    .option('--redis-wait <seconds>', 'with --redis: give up after this long with no worker for a role that has tasks (default 300)')
    .option('--redis-prefix <prefix>', 'with --redis: key prefix (default dkfac; workers need the same --prefix)')
    .option('--redis-tls-ca <file>', "with rediss://: PEM file of the CA of the server's certificate")
    .option('--network <spec>', "network model of the simulated clock: 'default' or e.g. bandwidthGbps=1,latencyMs=0.2,inverse=remote");
}

/** The same options for a child process (exp:all runs each figure in its own process). */
export function distOptionArgs(o: DistOptions): string[] {
  const out: string[] = [];
  if (o.redis) out.push('--redis', o.redis);
  if (o.redisWait) out.push('--redis-wait', o.redisWait);
  if (o.redisPrefix) out.push('--redis-prefix', o.redisPrefix);
  if (o.redisTlsCa) out.push('--redis-tls-ca', o.redisTlsCa);
  if (o.network) out.push('--network', o.network);
  return out;
}
