/**
 * Dense float64 linear algebra for K-FAC on the CPU (row-major Float64Array, explicit sizes): SPD inverses via
 * Cholesky, symmetric eigendecomposition, top singular pairs, and small helpers. No Kronecker product is ever
 * materialised by production code (`kronecker` exists for tests of small cases).
 *
 * The O(n³) routines (spdInverse, symEig) run on LAPACK through the native addon where it is built, else in
 * TypeScript (`linalgEngine()`); `spdInverseTs` / `symEigTs` always run the TypeScript reference.
 */
export { LinalgError, type LinalgErrorKind } from './errors.js';
export {
  cholesky,
  choleskySolve,
  spdInverse,
  spdInverseTs,
  spdInverseLapack,
  addDiagonal,
  mirrorLowerToUpper,
  type CholeskyOptions,
} from './cholesky.js';
export { symEig, symEigTs, symEigLapack, type SymEigResult } from './eigen.js';
export { linalgEngine, setLinalgEngine, lapackThreads, type LinalgEngine, type LinalgEngineChoice } from './lapack.js';
export {
  topSingularPair,
  topSingularPairs,
  type TopSingularOptions,
  type SingularPair,
  type SingularPairs,
} from './svd.js';
export {
  identity,
  transpose,
  matmul,
  matmulTransB,
  matvec,
  symmetrize,
  frobenius,
  trace,
  maxAbsDiff,
  kronecker,
} from './basic.js';
export { gemmNT } from './kernel.js';
export { mulberry32, gaussianSource, randomGaussian, randomSpd, randomSymmetric } from './random.js';
