/**
 * npm run worker -- --redis redis://HOST:PORT [--roles gradient,stats,inverse] [--threads N] [--backend B]
 *                   [--name NAME] [--prefix P] [--takeover-ms MS] [--tls-ca FILE] [--verbose]
 *
 * A worker process of the distributed runtime on any machine that reaches the Redis server: it serves the named roles
 * (default all three) of whichever run's parameter server (an experiment started with --redis) publishes tasks there,
 * computing up to N tasks at once on its own threads. It learns the model of the run it joins from the run's
 * descriptor and says which run it serves; the examples of each task come with the task. Workers may join and leave at
 * any time: a task of a worker that stops answering is taken over by another after --takeover-ms. Ctrl-C (SIGINT) or
 * SIGTERM finishes the tasks in hand and leaves; a second one leaves at once.
 *
 * The password goes in the URL (redis://user:password@host:port) or, better (not visible in `ps`), in
 * DKFAC_REDIS_PASSWORD; rediss:// is TLS, with the CA in --tls-ca or DKFAC_REDIS_TLS_CA.
 */
import { Command, Option } from 'commander';
import { BACKEND_NAMES, type BackendName, initBackend } from '../src/backend';
import { ROLES, type Role } from '../src/distributed/pool';
import { takePassword } from '../src/distributed/redis/connect';
import { RedisWorker } from '../src/distributed/redis/worker';
import { exitWithError } from './errors';

async function main(argv: string[]) {
  const program = new Command('worker')
    .description('a dkfac worker process: serves gradient, stats and inverse tasks of runs on a Redis server')
    .requiredOption('--redis <url>', 'the Redis server, redis://[user[:password]@]host:port or rediss://… (TLS)')
    .option('--roles <roles>', `comma-separated roles to serve (${ROLES.join(',')})`, ROLES.join(','))
    .option('--threads <n>', 'tasks computed at once, each on its own thread', '1')
    .addOption(new Option('--backend <name>', 'tfjs backend of the compute threads').choices([...BACKEND_NAMES]).default('auto'))
    .option('--name <name>', 'this worker\'s name in Redis (default host:pid)')
    .option('--prefix <prefix>', 'key prefix (the experiment\'s redis.prefix)', 'dkfac')
    .option('--takeover-ms <ms>', 'take over a task whose worker has been silent this long', '2000')
    .option('--tls-ca <file>', 'PEM file of the CA of the server\'s certificate (rediss://)')
    .option('--verbose', 'log every task started and finished')
    .exitOverride();
  program.parse(argv, { from: 'user' });
  const o = program.opts<{ redis: string; roles: string; threads: string; backend: BackendName; name?: string; prefix: string; takeoverMs: string; tlsCa?: string; verbose?: boolean }>();
  const roles = o.roles.split(',').map((r) => r.trim()).filter(Boolean);
  const bad = roles.filter((r) => !(ROLES as readonly string[]).includes(r));
  if (bad.length || !roles.length) throw new Error(`--roles ${o.roles}: unknown role(s) ${bad.join(', ') || '(none)'} (known: ${ROLES.join(', ')})`);
  const threads = Number(o.threads);
  if (!Number.isInteger(threads) || threads < 1 || threads > 64) throw new Error(`--threads ${o.threads}: an integer from 1 to 64`);
  const takeoverMs = Number(o.takeoverMs);
  if (!Number.isFinite(takeoverMs) || takeoverMs < 1000) throw new Error(`--takeover-ms ${o.takeoverMs}: at least 1000 (the heartbeat is every 500 ms)`);
  if (o.name !== undefined && !/^[A-Za-z0-9_.:-]{1,100}$/.test(o.name)) throw new Error(`--name ${o.name}: letters, digits and _.:- only`);
  if (!/^[A-Za-z0-9_.-]{1,40}$/.test(o.prefix)) throw new Error(`--prefix ${o.prefix}: letters, digits and _.- only`);
  const url = takePassword(o.redis);
  // the compute threads initialise the same backend; this thread's is only for the message
  const backend = await initBackend(o.backend);
  const w = new RedisWorker({ url, tlsCa: o.tlsCa, prefix: o.prefix, roles: [...new Set(roles)] as Role[], threads, backend: o.backend, backendName: `${backend.name} (${backend.detail})`, name: o.name, takeoverMs, verbose: o.verbose });
  await w.start();
  let signals = 0;
  const leave = (sig: string) => {
    signals++;
    if (signals > 1) process.exit(130);
    w.log(`${sig}: finishing the tasks in hand, then leaving (again to leave at once)`);
    void w.stop(true).then(() => {
      w.log(`left: ${w.counts.done} tasks done, ${w.counts.takenOver} taken over, ${w.counts.rejected} rejected, ${w.counts.dropped} dropped, ${w.counts.failed} failed`);
      process.exit(0);
    });
  };
  process.on('SIGINT', () => leave('SIGINT'));
  process.on('SIGTERM', () => leave('SIGTERM'));
  await w.serve();
}

main(process.argv.slice(2)).catch(exitWithError);
