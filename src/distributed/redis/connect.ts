/**
 * Connecting to Redis (ioredis), for the parameter server and for worker processes alike.
 *
 * URL: redis://[user@]host:port[/db] or rediss:// (TLS). The password comes from the URL
 * (redis://user:password@host:port: fine for a worker's command line on a machine of your own, visible in `ps`) or
 * from DKFAC_REDIS_PASSWORD; an experiment moves a password from its --redis URL into that variable so that neither
 * the run's config, its sidecar nor its checkpoint ever holds it. TLS: `rediss://` verifies the server's certificate
 * against the system's CAs, or against DKFAC_REDIS_TLS_CA (a PEM file; `tls.ca` in the config); the server name is
 * the URL's host.
 *
 * `connectRedis` fails fast with a clear error (unreachable, refused credentials, TLS failure, a Redis older than
 * 6.2, which has no XAUTOCLAIM) and afterwards reconnects forever in the background; whoever holds the connection
 * decides how long an outage may last (RedisRun.lostAfterSeconds; worker processes wait for Redis to come back).
 * It also checks that Redis never evicts keys (maxmemory-policy noeviction): an evicted blob would lose a shard.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { Redis, type RedisOptions } from 'ioredis';
import { z } from 'zod';

export const RedisConfig = z.strictObject({
  /** redis://[user@]host:port or rediss://…; no password here (DKFAC_REDIS_PASSWORD) */
  url: z
    .string()
    .refine((u) => /^rediss?:\/\/[^/]/.test(u), 'a redis://host:port or rediss://host:port URL')
    .refine((u) => {
      try {
        return !new URL(u).password;
      } catch {
        return false;
      }
    }, 'the URL carries a password, which would be written into the run\'s sidecar: pass it in DKFAC_REDIS_PASSWORD'),
  /** the key prefix of every key this project writes */
  prefix: z.string().regex(/^[A-Za-z0-9_.-]{1,40}$/).default('dkfac'),
  /** time to live of every blob (ms); the parameter server refreshes the blobs of tasks in flight */
  blobTtlMs: z.number().int().min(2000).max(86_400_000).default(600_000),
  /** how long the parameter server waits while no live worker serves a role it needs, before giving up (s) */
  workerWaitSeconds: z.number().positive().max(86_400).default(300),
  /** how long the connection to Redis may stay down before the run stops (s) */
  lostAfterSeconds: z.number().positive().max(3600).default(10),
  /** a PEM file of the CA that signed the server's certificate (rediss://) */
  tlsCa: z.string().optional(),
});
export type RedisConfig = z.infer<typeof RedisConfig>;
export type RedisConfigInput = z.input<typeof RedisConfig>;

export class RedisConnectError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RedisConnectError';
  }
}

/** The URL without any password (for messages, configs and sidecars). */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (!u.password) return url;
    u.password = '';
    return u.toString().replace(/\/$/, '');
  } catch {
    return url.replace(/:[^:@/]*@/, '@');
  }
}

/**
 * Moves a password out of a URL into DKFAC_REDIS_PASSWORD (of this process and the processes it starts) and returns
 * the URL without it.
 */
export function takePassword(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new RedisConnectError(`--redis ${redactUrl(url)}: not a URL (redis://host:port or rediss://host:port)`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new RedisConnectError(`--redis ${redactUrl(url)}: the scheme must be redis:// or rediss://`);
  if (!u.password) return url;
  process.env.DKFAC_REDIS_PASSWORD = decodeURIComponent(u.password);
  return redactUrl(url);
}

export interface ConnectOptions {
  url: string;
  tlsCa?: string;
  /** a name for CLIENT LIST (e.g. dkfac-ps:host:pid) */
  name?: string;
  /** give up the first connection after this long (ms) */
  connectTimeoutMs?: number;
}

export function redisOptions(o: ConnectOptions): RedisOptions {
  let u: URL;
  try {
    u = new URL(o.url);
  } catch {
    throw new RedisConnectError(`${redactUrl(o.url)}: not a URL (redis://host:port or rediss://host:port)`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new RedisConnectError(`${redactUrl(o.url)}: the scheme must be redis:// or rediss://`);
  const password = u.password ? decodeURIComponent(u.password) : process.env.DKFAC_REDIS_PASSWORD || undefined;
  const username = u.username ? decodeURIComponent(u.username) : undefined;
  const db = u.pathname && u.pathname !== '/' ? Number(u.pathname.slice(1)) : 0;
  if (!Number.isInteger(db) || db < 0) throw new RedisConnectError(`${redactUrl(o.url)}: '${u.pathname}' is not a database number`);
  const caPath = o.tlsCa ?? process.env.DKFAC_REDIS_TLS_CA;
  let tls: RedisOptions['tls'];
  if (u.protocol === 'rediss:') {
    let ca: Buffer | undefined;
    if (caPath) {
      try {
        ca = readFileSync(caPath);
      } catch (e) {
        throw new RedisConnectError(`TLS CA file ${caPath}: ${(e as Error).message}`);
      }
    }
    // the certificate is checked against the host (an IP address is matched against the certificate's IP SANs)
    const host = u.hostname.replace(/^\[|\]$/g, '');
    tls = { ...(isIP(host) ? {} : { servername: host }), ...(ca ? { ca } : {}) };
  }
  return {
    host: u.hostname.replace(/^\[|\]$/g, ''),
    port: u.port ? Number(u.port) : 6379,
    username,
    password,
    db,
    tls,
    connectionName: o.name,
    lazyConnect: true,
    connectTimeout: o.connectTimeoutMs ?? 5000,
    // commands wait while the connection is down (the holder decides when an outage is fatal)
    maxRetriesPerRequest: null,
    enableOfflineQueue: true,
    // no retries while connecting the first time (connectRedis turns retries on once connected)
    retryStrategy: () => null,
  };
}

/**
 * Opens a connection, fails with a clear RedisConnectError if it cannot (before any work), checks the server
 * (version, maxmemory-policy), then turns automatic reconnection on.
 */
export async function connectRedis(o: ConnectOptions, log: (m: string) => void = console.warn): Promise<Redis> {
  const opts = redisOptions(o);
  const where = redactUrl(o.url);
  const r = new Redis(opts);
  let lastError: Error | null = null;
  r.on('error', (e: Error) => {
    lastError = e;
  });
  try {
    await r.connect();
    await r.ping();
  } catch (e) {
    r.disconnect();
    const err = (lastError ?? e) as Error & { code?: string };
    const msg = err.message || String(err);
    const hint = /NOAUTH|WRONGPASS|invalid username-password|AUTH/i.test(msg)
      ? ' (check the user in the URL and the password in DKFAC_REDIS_PASSWORD or the URL)'
      : /ECONNREFUSED|ETIMEDOUT|ENOTFOUND|EHOSTUNREACH|timeout/i.test(msg)
        ? ' (is redis-server running there, and is its port open to this machine?)'
        : /certificate|SSL|TLS|self.signed|wrong version number/i.test(msg)
          ? ' (TLS: rediss:// needs the server\'s tls-port; give its CA with DKFAC_REDIS_TLS_CA)'
          : '';
    throw new RedisConnectError(`cannot use Redis at ${where}: ${msg}${hint}`);
  }
  const info = await r.info('server').catch(() => '');
  const version = /redis_version:(\d+)\.(\d+)/.exec(info);
  if (version && (Number(version[1]) < 6 || (Number(version[1]) === 6 && Number(version[2]) < 2))) {
    r.disconnect();
    throw new RedisConnectError(`Redis at ${where} is version ${version[1]}.${version[2]}: the transport needs 6.2 or newer (XAUTOCLAIM); Redis 7 is tested`);
  }
  try {
    const policy = (await r.config('GET', 'maxmemory-policy')) as string[];
    if (policy[1] && policy[1] !== 'noeviction') {
      r.disconnect();
      throw new RedisConnectError(
        `Redis at ${where} evicts keys (maxmemory-policy ${policy[1]}): a blob could vanish mid-step; set 'maxmemory-policy noeviction' (redis-cli CONFIG SET maxmemory-policy noeviction)`,
      );
    }
  } catch (e) {
    if (e instanceof RedisConnectError) throw e;
    log(`note: cannot read maxmemory-policy of Redis at ${where} (${(e as Error).message.split('\n')[0]}); make sure it is noeviction`);
  }
  // from now on: reconnect forever, every 200 ms to 1 s
  r.options.retryStrategy = (times: number) => Math.min(200 * times, 1000);
  r.removeAllListeners('error');
  r.on('error', () => undefined);
  return r;
}
