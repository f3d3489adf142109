/** K-FAC curvature: factors, π damping, Fisher blocks, registration and the stats computation. */
export * from './errors';
export * from './pi';
export * from './ema';
export * from './factors';
export * from './blocks';
export * from './registry';
export * from './statistics';
