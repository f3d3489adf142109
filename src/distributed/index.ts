/**
 * Distributed K-FAC [P §3, Fig. 1]: gradient workers, a stats worker, inverse workers and the parameter server, each
 * on worker threads or in-line, with a real and a simulated clock. See server.ts for one step, refresher.ts for the
 * asynchronous inverses and staleness, clock.ts for the simulated cluster clock, pool.ts for the failure policy.
 */
export * from './messages';
export { makespan, SimClock } from './clock';
export { type FaultEvent, type FaultPolicy, type Role, RolePool, WorkerFault } from './pool';
export { AsyncInverseRefresher, type InverseSchedule, type RefresherState } from './refresher';
export { type CostClock, cpuMs, gradientShard, invertSnapshots, loadParams, statsBatch, wallMs, wireParams } from './roles';
export { StatsPump } from './stats-pump';
export { DistConfig, type DistConfigInput, type DistStepResult, type Injections, ParameterServer, type ParameterServerState, shardRanges, type StatsRecord } from './server';
export { type DistRunSummary, runDistributedTraining } from './run';
