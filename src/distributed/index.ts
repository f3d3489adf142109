/**
 * Distributed K-FAC [P §3, Fig. 1]: gradient workers, a stats worker, inverse workers and the parameter server, each
 * in-line, on worker threads or on worker processes through Redis, with a real and a simulated clock. See server.ts
 * for one step, refresher.ts for the asynchronous inverses and staleness, clock.ts for the simulated cluster clock,
 * network.ts for the communication and its model, pool.ts for the transports and the failure policy, redis/ for the
 * Redis transport and its worker processes.
 */
export * from './messages';
export { makespan, SimClock } from './clock';
export { type FaultEvent, type FaultPolicy, type Role, RolePool, type RoleTransport, WorkerFault } from './pool';
export { Network, NetworkModel, parseNetworkSpec, payloadBytes, StepTraffic } from './network';
export { RedisConfig } from './redis/connect';
export { RedisRolePool, RedisRun, TransportError } from './redis/transport';
export { RedisWorker } from './redis/worker';
export { AsyncInverseRefresher, type InverseSchedule, type RefresherState } from './refresher';
export { type CostClock, cpuMs, gradientShard, invertSnapshots, loadParams, statsBatch, wallMs, wireParams } from './roles';
export { StatsPump } from './stats-pump';
export { DistConfig, type DistConfigInput, type DistStepResult, type Injections, ParameterServer, type ParameterServerState, shardRanges, type StatsRecord } from './server';
export { type DistRunSummary, runDistributedTraining } from './run';
