/**
 * Communication: what each role exchanges with the parameter server, and a network model that turns it into time
 * on the simulated cluster clock (clock.ts).
 *
 * Traffic is counted in payload bytes (every typed array of a message: the tensors, not the framing), the same for
 * every transport, by kind:
 *   params     θ sent to a gradient or stats worker (float32 per parameter)
 *   data       the examples of a shard or a stats batch (float32 images, int32 labels)
 *   gradients  a shard's gradient and its batch-norm statistics (float32)
 *   stats      a stats batch's per-block factor statistics (float64)
 *   snapshots  the factor snapshot sent to an inverse worker (float64)
 *   inverses   the damped inverses it returns (float64)
 * A conv layer with K×K kernels and C channels in and out has a K²C² gradient but a (K²C)² = K⁴C² input factor, which
 * is why the stats and inverse traffic is refreshed rarely (statsEvery, the inverse schedule).
 *
 * The network model: the parameter server sits at the centre of a star; a role placed 'remote' is on its own machine
 * with a link of `bandwidthGbps` and one-way `latencyMs` to it, a role placed 'local' shares the parameter server's
 * machine (no transfer). The parameter server's link is shared: its transfers to (or from) the remote workers of one
 * phase go one after another. One compute phase (gradient shards and synchronous statistics) then costs
 *   down = L + Σ_remote bytes_to_worker / B      (0 when no remote worker takes part)
 *   up   = L + Σ_remote bytes_from_worker / B
 * on top of the slowest worker: C_k = down + max(g_i, s_k) + up. An inverse job on a remote inverse worker takes
 * L + snapshot/B + makespan + L + inverses/B. Examples count as traffic only with `data: true` (the paper's workers
 * read their own data; our transports ship the examples with the task, and the byte counts always include them).
 * Defaults: 10 Gbit/s, 0.05 ms, gradient and stats workers remote, inverse workers local (the paper's inverse
 * threads run on the parameter server's CPU).
 */
import { z } from 'zod';
import type { Role } from './pool';

const Placement = z.enum(['remote', 'local']);

export const NetworkModel = z.strictObject({
  /** link bandwidth, Gbit/s */
  bandwidthGbps: z.number().positive().max(100_000).default(10),
  /** one-way latency of a transfer, ms */
  latencyMs: z.number().min(0).max(60_000).default(0.05),
  /** which roles run on machines of their own ('remote') or on the parameter server's ('local') */
  placement: z
    .strictObject({
      gradient: Placement.default('remote'),
      stats: Placement.default('remote'),
      inverse: Placement.default('local'),
    })
    .default({ gradient: 'remote', stats: 'remote', inverse: 'local' }),
  /** whether the examples a worker computes on cross the network (default: workers read their own data) */
  data: z.boolean().default(false),
});
export type NetworkModel = z.infer<typeof NetworkModel>;
export type NetworkModelInput = z.input<typeof NetworkModel>;

export type TrafficKind = 'params' | 'data' | 'gradients' | 'stats' | 'snapshots' | 'inverses';
export const TRAFFIC_KINDS: readonly TrafficKind[] = ['params', 'data', 'gradients', 'stats', 'snapshots', 'inverses'];

/** Payload bytes of a message: the byte lengths of every typed array reachable from `v`. */
export function payloadBytes(v: unknown): number {
  if (v === null || typeof v !== 'object') return 0;
  if (ArrayBuffer.isView(v)) return v.byteLength;
  if (v instanceof ArrayBuffer) return v.byteLength;
  let n = 0;
  if (Array.isArray(v)) for (const x of v) n += payloadBytes(x);
  else if (v instanceof Map) for (const x of v.values()) n += payloadBytes(x);
  else for (const x of Object.values(v)) n += payloadBytes(x);
  return n;
}

/** One message of a phase: its role, kind, direction and payload bytes. */
export interface Transfer {
  role: Role;
  kind: TrafficKind;
  /** 'down': parameter server → worker; 'up': worker → parameter server */
  dir: 'down' | 'up';
  bytes: number;
}

/** Traffic of one step, bytes by role and by kind. */
export class StepTraffic {
  readonly byRole: Record<Role, number> = { gradient: 0, stats: 0, inverse: 0 };
  readonly byKind: Record<TrafficKind, number> = { params: 0, data: 0, gradients: 0, stats: 0, snapshots: 0, inverses: 0 };

  add(transfers: readonly Transfer[]): void {
    for (const t of transfers) {
      this.byRole[t.role] += t.bytes;
      this.byKind[t.kind] += t.bytes;
    }
  }
}

export class Network {
  constructor(readonly model: NetworkModel | undefined) {}

  private remote(role: Role): boolean {
    return !!this.model && this.model.placement[role] === 'remote';
  }

  private counts(t: Transfer): boolean {
    return this.remote(t.role) && (t.kind !== 'data' || this.model!.data);
  }

  /** ms to move `bytes` over one link (with its latency). */
  private linkMs(bytes: number): number {
    const m = this.model!;
    return m.latencyMs + (bytes * 8) / (m.bandwidthGbps * 1e9) * 1000;
  }

  /** Transfer time (ms) of one phase's messages: down then up, each over the parameter server's shared link. */
  phaseMs(transfers: readonly Transfer[]): number {
    if (!this.model) return 0;
    let ms = 0;
    for (const dir of ['down', 'up'] as const) {
      const ts = transfers.filter((t) => t.dir === dir && this.counts(t));
      if (ts.length) ms += this.linkMs(ts.reduce((a, t) => a + t.bytes, 0));
    }
    return ms;
  }
}

/**
 * A network model from the command line: 'default', or comma-separated key=value pairs among bandwidthGbps,
 * latencyMs, gradient, stats, inverse (remote|local) and data (true|false), e.g.
 * `bandwidthGbps=1,latencyMs=0.2,inverse=remote`; the rest take their defaults.
 */
export function parseNetworkSpec(spec: string): NetworkModel {
  const raw: Record<string, unknown> = {};
  const placement: Record<string, unknown> = {};
  if (spec.trim() !== 'default') {
    for (const part of spec.split(',').map((s) => s.trim()).filter(Boolean)) {
      const eq = part.indexOf('=');
      if (eq <= 0) throw new Error(`--network ${spec}: '${part}' is not key=value`);
      const k = part.slice(0, eq);
      const v = part.slice(eq + 1);
      if (k === 'gradient' || k === 'stats' || k === 'inverse') placement[k] = v;
      else if (k === 'data') raw.data = v === 'true' ? true : v === 'false' ? false : v;
      else if (k === 'bandwidthGbps' || k === 'latencyMs') raw[k] = Number(v);
      else throw new Error(`--network ${spec}: unknown key '${k}' (bandwidthGbps, latencyMs, gradient, stats, inverse, data)`);
    }
  }
  const r = NetworkModel.safeParse({ ...raw, ...(Object.keys(placement).length ? { placement } : {}) });
  if (!r.success) throw new Error(`--network ${spec}: ${r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
  return r.data;
}
