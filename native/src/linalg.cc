// K-FAC's dense float64 linear algebra on LAPACK (OpenBLAS 0.3.21, which carries LAPACK): the damped SPD inverse
// (dpotrf + dpotri) and the symmetric eigendecomposition (dsyevd), on plain Float64Arrays that JavaScript passes
// (not the wasm heap: src/linalg works on Float64Arrays, also inside the inverse worker threads). The TypeScript
// routines in src/linalg stay the reference and the fallback; these keep their conventions exactly:
//   - matrices are row-major n×n and only the LOWER triangle is read. Row-major memory read as column-major is the
//     transpose, so LAPACK's 'U' on the same buffer is our lower triangle: no copy, no transpose on the way in;
//   - spdInverse applies the TS relative pivot test (pivot dⱼ = U[j][j]² must exceed pivotTol·A[j][j]; dpotrf by
//     itself only rejects dⱼ ≤ 0) and reports the first failing pivot and its value, so that JavaScript raises the
//     same LinalgError('not-positive-definite', index, value). On failure the buffer holds garbage (as the TS
//     in-place path). Validation of lengths and NaN/Infinity stays in JavaScript (same errors, same messages);
//   - symEig returns ascending eigenvalues and the eigenvectors as the COLUMNS of a row-major matrix.
//
// Threads. Every call runs on the calling thread (the main thread or an inverse worker). OpenBLAS is set to one
// thread for these calls by default: this machine has one physical core (two threads measured no faster, and slower
// while another job runs), the CPU-time clock of the distributed runtime (process.cpuUsage) then charges exactly the
// work, and several worker threads may call LAPACK at the same time, which is the set-up OpenBLAS's FAQ prescribes
// for multi-threaded programs (its pthread build, Debian's, compiles its buffer locks in; with one thread no thread
// pool is involved). `linalgThreads(k)` with k > 1 lets one call use k OpenBLAS threads; such calls are serialised
// by a process-wide lock (the addon is loaded once per process; only its thread_local state is per thread), because
// the threaded paths of 0.3.x had races between concurrent callers (OpenBLAS issues #1844, #2126, #5153). Changing
// the count takes the lock exclusively, so it never changes under a running call. An OpenMP build of OpenBLAS
// (libopenblas0-openmp, not what libopenblas-dev installs by default) would apply openblas_set_num_threads to the
// OpenMP runtime that oneDNN shares, so there the count is left alone (LAPACK follows the calling thread's OpenMP
// setting) and every call is serialised.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#ifdef __AVX512F__
#include <immintrin.h>
#endif

#include "common.h"

extern "C" {
void dpotrf_(const char* uplo, const int* n, double* a, const int* lda, int* info);
void dpotri_(const char* uplo, const int* n, double* a, const int* lda, int* info);
void dsyevd_(const char* jobz, const char* uplo, const int* n, double* a, const int* lda, double* w, double* work,
             const int* lwork, int* iwork, const int* liwork, int* info);
void ssyrk_(const char* uplo, const char* trans, const int* n, const int* k, const float* alpha, const float* a,
            const int* lda, const float* beta, float* c, const int* ldc);
void sgemm_(const char* ta, const char* tb, const int* m, const int* n, const int* k, const float* alpha, const float* a,
            const int* lda, const float* b, const int* ldb, const float* beta, float* c, const int* ldc);
void openblas_set_num_threads(int n);
int openblas_get_parallel(void);
}

namespace dk {
namespace {

std::shared_mutex gLapackLock;
std::atomic<int> gThreads{1};
std::once_flag gInit;

/** Whether OpenBLAS was built with OpenMP (openblas_get_parallel: 0 sequential, 1 pthreads, 2 OpenMP). */
bool openblasUsesOpenMP() {
  static const bool omp = openblas_get_parallel() == 2;
  return omp;
}

/** Holds the lock a LAPACK call needs: shared with one OpenBLAS thread, exclusive with more (or with OpenMP). */
class LapackGuard {
 public:
  LapackGuard() {
    std::call_once(gInit, [] {
      std::unique_lock<std::shared_mutex> w(gLapackLock);
      if (!openblasUsesOpenMP()) openblas_set_num_threads(gThreads.load());
    });
    if (gThreads.load() > 1 || openblasUsesOpenMP()) {
      excl_ = std::unique_lock<std::shared_mutex>(gLapackLock);
    } else {
      shared_ = std::shared_lock<std::shared_mutex>(gLapackLock);
    }
  }

 private:
  std::unique_lock<std::shared_mutex> excl_;
  std::shared_lock<std::shared_mutex> shared_;
};

/** LAPACK's int is 32-bit (LP64 OpenBLAS): dsyevd's workspace 1 + 6n + 2n² must fit. */
constexpr int64_t kMaxOrder = 32000;

/** The Float64Array argument i, checked to hold exactly `len` entries. */
double* f64Arg(const Napi::CallbackInfo& info, size_t i, size_t len, const char* fn, const char* what) {
  const Napi::Value v = info[i];
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
    throw Napi::TypeError::New(info.Env(), std::string(fn) + ": " + what + " must be a Float64Array");
  }
  auto a = v.As<Napi::Float64Array>();
  if (a.ElementLength() != len) {
    throw Napi::RangeError::New(info.Env(), std::string(fn) + ": " + what + " has " + std::to_string(a.ElementLength()) +
                                                " entries, expected " + std::to_string(len));
  }
  return a.Data();
}

int64_t orderArg(const Napi::CallbackInfo& info, size_t i, const char* fn) {
  const double n = info[i].As<Napi::Number>().DoubleValue();
  if (!(n >= 0 && n <= kMaxOrder && n == std::floor(n))) {
    throw Napi::RangeError::New(info.Env(), std::string(fn) + ": order n = " + std::to_string(n) + " is not an integer in [0, " +
                                                std::to_string(kMaxOrder) + "]");
  }
  return static_cast<int64_t>(n);
}

/** f(i, j) for every strict-lower-triangle position j < i of an n×n matrix, in cache-sized tiles. */
template <typename F>
void forStrictLowerTiled(int64_t n, F&& f) {
  constexpr int64_t t = 32;
  for (int64_t i0 = 0; i0 < n; i0 += t) {
    const int64_t i1 = std::min(n, i0 + t);
    for (int64_t j0 = 0; j0 <= i0; j0 += t) {
      const int64_t j1 = std::min(n, j0 + t);
      for (int64_t i = i0; i < i1; i++) {
        const int64_t jEnd = std::min(j1, i);
        for (int64_t j = j0; j < jEnd; j++) f(i, j);
      }
    }
  }
}

/** w[j][i] = w[i][j] for j < i (row-major): the strict lower triangle onto the upper one. */
void mirrorLowerToUpper(double* w, int64_t n) {
  forStrictLowerTiled(n, [w, n](int64_t i, int64_t j) { w[j * n + i] = w[i * n + j]; });
}

/** In-place transpose of a square row-major matrix. */
void transposeSquare(double* w, int64_t n) {
  forStrictLowerTiled(n, [w, n](int64_t i, int64_t j) { std::swap(w[i * n + j], w[j * n + i]); });
}

Napi::Value pivotFailure(Napi::Env env, int64_t j, double d) {
  auto o = Napi::Object::New(env);
  o.Set("pivot", static_cast<double>(j));
  o.Set("value", d);
  return o;
}

}  // namespace

// spdInverseF64(a: Float64Array (n·n, row-major, lower triangle read), n, pivotTol)
//   → null, with a overwritten by the full symmetric inverse, or { pivot, value } for the first pivot that fails
//     the test dⱼ > 0 and dⱼ > pivotTol·A[j][j] (a then holds garbage).
Napi::Value SpdInverseF64(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  const int64_t n = orderArg(info, 1, "spdInverseF64");
  double* w = f64Arg(info, 0, static_cast<size_t>(n * n), "spdInverseF64", "a");
  const double tol = info[2].As<Napi::Number>().DoubleValue();
  if (n == 0) return env.Null();
  std::vector<double> orig(n);
  for (int64_t j = 0; j < n; j++) orig[j] = w[j * n + j];
  const int ni = static_cast<int>(n);
  int infoF = 0;
  {
    LapackGuard g;
    dpotrf_("U", &ni, w, &ni, &infoF);
  }
  if (infoF < 0) throw Napi::Error::New(env, "spdInverseF64: dpotrf rejected argument " + std::to_string(-infoF));
  // Pivots dⱼ = U[j][j]² up to the one dpotrf stopped at (info = k: pivot k−1 was ≤ 0, or NaN that its `ajj <= 0`
  // test let through; OpenBLAS leaves that pivot unrooted on the diagonal).
  const int64_t done = infoF > 0 ? infoF - 1 : n;
  for (int64_t j = 0; j < n; j++) {
    const double u = w[j * n + j];
    const double d = j < done ? u * u : u;
    if (!(d > 0 && d > tol * orig[j])) return pivotFailure(env, j, d);
    if (j >= done) break;
  }
  if (infoF > 0) return pivotFailure(env, done, w[done * n + done]);  // (not reached: that pivot is ≤ 0)
  int infoI = 0;
  {
    LapackGuard g;
    dpotri_("U", &ni, w, &ni, &infoI);
  }
  if (infoI < 0) throw Napi::Error::New(env, "spdInverseF64: dpotri rejected argument " + std::to_string(-infoI));
  if (infoI > 0) return pivotFailure(env, infoI - 1, 0.0);  // a zero diagonal of U: excluded by the test above
  mirrorLowerToUpper(w, n);
  return env.Null();
}

// symEigF64(a: Float64Array (n·n, lower triangle read, not modified), n, values: Float64Array(n),
//           vectors: Float64Array(n·n)) → LAPACK's info (0: done; > 0: dsyevd did not converge)
// values ascending; column j of the row-major `vectors` is the unit eigenvector of values[j].
Napi::Value SymEigF64(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  const int64_t n = orderArg(info, 1, "symEigF64");
  const double* a = f64Arg(info, 0, static_cast<size_t>(n * n), "symEigF64", "a");
  double* values = f64Arg(info, 2, static_cast<size_t>(n), "symEigF64", "values");
  double* z = f64Arg(info, 3, static_cast<size_t>(n * n), "symEigF64", "vectors");
  if (n == 0) return Napi::Number::New(env, 0);
  if (z != a) std::copy(a, a + n * n, z);
  const int ni = static_cast<int>(n);
  int infoE = 0;
  {
    LapackGuard g;
    // Workspace query, then the decomposition in z (read as column-major: our lower triangle is its 'U').
    double wq = 0;
    int iq = 0, lwork = -1, liwork = -1;
    dsyevd_("V", "U", &ni, z, &ni, values, &wq, &lwork, &iq, &liwork, &infoE);
    if (infoE != 0) throw Napi::Error::New(env, "symEigF64: dsyevd workspace query failed with info " + std::to_string(infoE));
    lwork = static_cast<int>(wq);
    liwork = iq;
    std::vector<double> work(static_cast<size_t>(std::max(lwork, 1)));
    std::vector<int> iwork(static_cast<size_t>(std::max(liwork, 1)));
    dsyevd_("V", "U", &ni, z, &ni, values, work.data(), &lwork, iwork.data(), &liwork, &infoE);
  }
  if (infoE < 0) throw Napi::Error::New(env, "symEigF64: dsyevd rejected argument " + std::to_string(-infoE));
  // Column-major Z (column j = vector j) is row-major Zᵀ: transpose so that columns are the vectors.
  if (infoE == 0) transposeSquare(z, n);
  return Napi::Number::New(env, infoE);
}

// gram(heap, x, out, rows, K): out = XᵀX for a row-major [rows, K] float32 X on the wasm heap, into a K×K output,
// with BLAS's symmetric rank-k update (ssyrk: half the multiply-adds of a general product, the K-FAC factors' Gram
// matrices XᵀX being symmetric), then the computed triangle mirrored so that the output is the whole matrix, as the
// general product gives it. Row-major X is column-major Xᵀ (K×rows, lda K), so C = XᵀX is ssyrk's 'N' product of
// that matrix; its upper triangle in column-major is our lower one. Same threads and lock as the LAPACK calls.
Napi::Value Gram(const Napi::CallbackInfo& info) {
  auto heap = info[0].As<Napi::ArrayBuffer>();
  const float* x = heapF32(heap, info[1]);
  float* out = heapF32(heap, info[2]);
  const int64_t rows = static_cast<int64_t>(info[3].As<Napi::Number>().DoubleValue());
  const int64_t K = static_cast<int64_t>(info[4].As<Napi::Number>().DoubleValue());
  if (rows < 0 || K <= 0 || K > kMaxOrder || rows > std::numeric_limits<int>::max()) {
    throw Napi::Error::New(info.Env(), "gram: sizes out of range");
  }
  if (rows == 0) {
    std::fill(out, out + K * K, 0.0f);
    return info.Env().Undefined();
  }
  {
    LapackGuard guard;
    const int n = static_cast<int>(K), k = static_cast<int>(rows);
    const float one = 1.0f, zero = 0.0f;
    ssyrk_("U", "N", &n, &k, &one, x, &n, &zero, out, &n);
  }
  // mirrored in 16×16 tiles (measured for K = 1024: 1.4 ms a column at a time, over five times ssyrk's own 0.26 ms;
  // tiles 0.35 ms)
  upperTriangleTiles(K, 16, true, [out, K](int64_t i, int64_t j) { out[i * K + j] = out[j * K + i]; });
  return info.Env().Undefined();
}

namespace {

/**
 * The input positions one kernel tap covers along an axis, for stride 1: tap i reads input index y + i − before for
 * the outputs y ∈ [0, out), clipped to the input [0, n): the range [lo_i, hi_i). The ranges of all taps cut the axis
 * into segments (between consecutive distinct end points); each tap's range is a run of whole segments, [first, last).
 */
struct AxisSegments {
  std::vector<int64_t> edges;                  // segment s is [edges[s], edges[s + 1])
  std::vector<std::pair<int64_t, int64_t>> tap;  // per tap: its run of segments
};

AxisSegments axisSegments(int64_t n, int64_t k, int64_t out, int64_t before) {
  AxisSegments a;
  std::vector<std::pair<int64_t, int64_t>> ranges;
  for (int64_t i = 0; i < k; i++) {
    const int64_t lo = std::clamp<int64_t>(i - before, 0, n), hi = std::clamp<int64_t>(i - before + out, 0, n);
    ranges.emplace_back(lo, std::max(lo, hi));
    a.edges.push_back(lo);
    a.edges.push_back(std::max(lo, hi));
  }
  std::sort(a.edges.begin(), a.edges.end());
  a.edges.erase(std::unique(a.edges.begin(), a.edges.end()), a.edges.end());
  for (auto [lo, hi] : ranges) {
    const auto f = std::lower_bound(a.edges.begin(), a.edges.end(), lo) - a.edges.begin();
    const auto l = std::lower_bound(a.edges.begin(), a.edges.end(), hi) - a.edges.begin();
    a.tap.emplace_back(f, l);
  }
  return a;
}

/** patchGramPath('blas') forces the sgemm path (the tests run both); 'auto' takes the AVX-512 path where compiled. */
std::atomic<bool> gPatchGramBlas{false};

#ifdef __AVX512F__
constexpr bool kPatchGramAvx512 = true;

/**
 * One tile of a region's products, added to `reg` (column-major C × SC: entry (c, j) at j·C + c): rows j0 … j0+jn−1
 * of the window (J ≥ jn computed, the rest discarded) times channels c0 … c0+15 (mask m0) and c0+16 … c0+31 (m1, when
 * Two), summed over the positions q of `runs` ([q0, q1) pairs): u = xt + q·C, its window at xt + q·C + wOff. The
 * window entries are broadcast, the channels are the vector lanes: J·(1 + Two) accumulators stay in registers and
 * each position costs 1 + Two vector loads and J broadcasts for J·(1 + Two) FMAs, read straight from the padded input
 * (no window copy, no packing).
 */
template <int J, bool Two>
void shiftTile(const float* xt, int64_t C, int64_t wOff, const int64_t* runs, int64_t nruns, int64_t j0, int64_t jn,
               int64_t c0, __mmask16 m0, __mmask16 m1, float* reg) {
  constexpr int J1 = Two ? J : 1;  // (the second vector's accumulators exist only with Two)
  __m512 a0[J], a1[J1];
#pragma GCC unroll 32
  for (int i = 0; i < J; i++) {
    const bool live = i < jn;
    a0[i] = live ? _mm512_maskz_loadu_ps(m0, reg + (j0 + i) * C + c0) : _mm512_setzero_ps();
    if constexpr (Two) a1[i] = live ? _mm512_maskz_loadu_ps(m1, reg + (j0 + i) * C + c0 + 16) : _mm512_setzero_ps();
  }
  for (int64_t r = 0; r < nruns; r++) {
    for (int64_t q = runs[2 * r]; q < runs[2 * r + 1]; q++) {
      const float* u = xt + q * C + c0;
      const float* w = xt + q * C + wOff + j0;
      const __m512 u0 = _mm512_maskz_loadu_ps(m0, u);
      if constexpr (Two) {
        const __m512 u1 = _mm512_maskz_loadu_ps(m1, u + 16);
#pragma GCC unroll 32
        for (int i = 0; i < J; i++) {
          const __m512 b = _mm512_set1_ps(w[i]);
          a0[i] = _mm512_fmadd_ps(b, u0, a0[i]);
          a1[i] = _mm512_fmadd_ps(b, u1, a1[i]);
        }
      } else {
#pragma GCC unroll 32
        for (int i = 0; i < J; i++) a0[i] = _mm512_fmadd_ps(_mm512_set1_ps(w[i]), u0, a0[i]);
      }
    }
  }
#pragma GCC unroll 32
  for (int i = 0; i < J; i++) {
    if (i >= jn) break;
    _mm512_mask_storeu_ps(reg + (j0 + i) * C + c0, m0, a0[i]);
    if constexpr (Two) _mm512_mask_storeu_ps(reg + (j0 + i) * C + c0 + 16, m1, a1[i]);
  }
}

/** Every tile of one region over a group of runs: channel blocks of 32 (two vectors) or fewer, window rows by 12 or 24. */
void regionTiles(const float* xt, int64_t C, int64_t SC, int64_t wOff, const int64_t* runs, int64_t nruns, float* reg) {
  for (int64_t c0 = 0; c0 < C; c0 += 32) {
    const int64_t cw = std::min<int64_t>(32, C - c0);
    const auto mask = [](int64_t n) { return static_cast<__mmask16>(n >= 16 ? 0xFFFF : (1u << n) - 1); };
    const __mmask16 m0 = mask(cw), m1 = mask(std::max<int64_t>(0, cw - 16));
    if (cw > 16) {
      for (int64_t j0 = 0; j0 < SC; j0 += 12) shiftTile<12, true>(xt, C, wOff, runs, nruns, j0, std::min<int64_t>(12, SC - j0), c0, m0, m1, reg);
    } else {
      for (int64_t j0 = 0; j0 < SC; j0 += 24) shiftTile<24, false>(xt, C, wOff, runs, nruns, j0, std::min<int64_t>(24, SC - j0), c0, m0, m1, reg);
    }
  }
}
#else
constexpr bool kPatchGramAvx512 = false;
#endif

}  // namespace

// patchGramPath(path?: 'blas' | 'auto') → the path PatchGram takes now ('avx512' or 'blas'), after setting it.
Napi::Value PatchGramPath(const Napi::CallbackInfo& info) {
  if (info.Length() > 0 && info[0].IsString()) {
    const std::string p = info[0].As<Napi::String>().Utf8Value();
    if (p != "blas" && p != "auto") throw Napi::Error::New(info.Env(), "patchGramPath: 'blas' or 'auto', got '" + p + "'");
    gPatchGramBlas.store(p == "blas");
  }
  return Napi::String::New(info.Env(), kPatchGramAvx512 && !gPatchGramBlas.load() ? "avx512" : "blas");
}

// patchGram(heap, x, out, dims = [N, H, W, C, Ho, Wo, KH, KW, strideH = 1, strideW = 1, padTop, padLeft]): the Gram
// matrix PᵀP of every stride-1 conv patch (the rows of the im2col matrix P, [N·Ho·Wo, K], K = KH·KW·C in the kernel's
// (i, j, c) order), K×K, for the KFC input factor, WITHOUT the patches. The block of taps d = (i, j), d' = (i', j') is
//   Σ_n Σ_{q ∈ R_d} x[n, q]ᵀ x[n, q + δ]        (δ = d' − d; x zero outside the image)
// where R_d, the input positions tap d covers, is a rectangle. So the matrix needs, per shift δ with d ≤ d' (the other
// blocks are transposes: vertical shifts dy ≥ 0, every horizontal one), C×C products summed over the image once:
// KH·(2KW−1) instead of (KH·KW)²/2 multiply-adds per position and channel pair (45 vs 312.5 for 5×5 kernels, 6.9×
// fewer; 15 vs 40.5 for 3×3, 2.7×); every entry of the output is written once, from the block of d ≤ d' or its transpose
// (a diagonal block from its lower half: the output is exactly symmetric). The rectangles are unions of segments of each axis (axisSegments): the products are summed per region (row
// segment × column segment) and every block is read off 2-D prefix sums over the regions (float64).
//
// Layout. The input is copied once, zero-padded, as rows of positions (r, n, c) for r < H + KH − 1 (the rows past H
// zero) and c < Wp = W + KW − 1 (the columns past W zero: they are also the left padding of the next row), C floats
// each, with KW − 1 zero positions before and after. A position's horizontal neighbours c − (KW−1) … c + (KW−1) are
// then the 2KW − 1 consecutive positions around it (the window of (2KW − 1)·C consecutive floats), and the row below
// is N·Wp positions on.
//
// AVX-512 path (where the addon is compiled for it, -march=native): every region's products directly from the padded
// input, by register tiles (shiftTile: channels in the vector lanes, window entries broadcast; no window copy, no
// packing, only the image columns), about 2× faster than the sgemm path on 5×5 kernels with 32 channels (and 2× on
// 3 channels, where sgemm's 3-row products are poor).
//
// sgemm path (every other CPU; the tests run both): `win` holds, for every position, its window copied out, so for
// each vertical shift dy one sgemm per row segment gives the
// products of all the horizontal shifts at once: Winᵀ·U ((2KW−1)C × C), U the positions of the segment (the zero
// padding columns included: they add nothing) and Win the windows dy rows below. A column segment that is not the
// widest is summed column by column (the rows (r, n) of one column at a constant stride); the widest is the whole
// width minus the others. Sums in float32 (inside sgemm, as the patches' ssyrk, or the tiles); prefix sums in float64.
// Examples are taken in chunks whose windows would stay under 32 MB (the region sums add up over the chunks).
Napi::Value PatchGram(const Napi::CallbackInfo& info) {
  auto heap = info[0].As<Napi::ArrayBuffer>();
  const int32_t* d = dimsOf(info[3], 12, "patchGram");
  const int64_t N = d[0], H = d[1], W = d[2], C = d[3], Ho = d[4], Wo = d[5], KH = d[6], KW = d[7], top = d[10],
                left = d[11];
  if (d[8] != 1 || d[9] != 1) throw Napi::Error::New(info.Env(), "patchGram: stride 1 only");
  const float* x = heapF32(heap, info[1]);
  float* out = heapF32(heap, info[2]);
  const int64_t K = KH * KW * C;
  if (N < 0 || H <= 0 || W <= 0 || C <= 0 || KH <= 0 || KW <= 0 || Ho <= 0 || Wo <= 0 || K > kMaxOrder) {
    throw Napi::Error::New(info.Env(), "patchGram: sizes out of range");
  }
  if (N == 0) {
    std::fill(out, out + K * K, 0.0f);
    return info.Env().Undefined();
  }
  const int64_t P = KW - 1, S = 2 * KW - 1, SC = S * C, Hp = H + KH - 1, Wp = W + P;
  // examples in chunks: the windows of a chunk are at most kChunkFloats (or one example's)
  constexpr int64_t kChunkFloats = int64_t{1} << 23;
  const int64_t chunk = std::clamp<int64_t>(kChunkFloats / (Hp * Wp * SC), 1, N);
  if (static_cast<double>(Hp * chunk * Wp + 2 * P) * SC > std::numeric_limits<int>::max()) {
    throw Napi::Error::New(info.Env(), "patchGram: input too large");
  }
  const AxisSegments rows = axisSegments(H, KH, Ho, top), cols = axisSegments(W, KW, Wo, left);
  const int64_t RS = static_cast<int64_t>(rows.edges.size()) - 1, CS = static_cast<int64_t>(cols.edges.size()) - 1;
  int64_t wide = 0;  // the widest column segment: the whole width minus the others
  for (int64_t s = 1; s < CS; s++) {
    if (cols.edges[s + 1] - cols.edges[s] > cols.edges[wide + 1] - cols.edges[wide]) wide = s;
  }
  const int64_t R = C * SC;  // one region's products: (2KW−1)C × C, row-major
  // region sums of every vertical shift (summed over the chunks); per thread, reused
  thread_local std::vector<float> region, one;
  region.assign(static_cast<size_t>(KH * RS * CS * R), 0.0f);
  one.resize(static_cast<size_t>(R));
  // (OpenMP's threads reach the calling thread's buffers through pointers: a thread_local named there is their own)
  float* const regions0 = region.data();
  const int c32 = static_cast<int>(C), sc32 = static_cast<int>(SC);
  const float alpha = 1.0f, zero = 0.0f;
  // per thread, reused: a fresh allocation of this size would be page-faulted in and zeroed by every call
  thread_local std::vector<float> padded, win;
  const bool avx512 = kPatchGramAvx512 && !gPatchGramBlas.load();
  // the AVX-512 path's tiles and the prefix sums run on the OpenMP threads where the work is large enough (the sgemm
  // path keeps BLAS's own threads, under the LAPACK guard)
  const bool parallel = static_cast<double>(N) * H * W * C * SC >= 1 << 20;
  LapackGuard guard;
  for (int64_t n0 = 0; n0 < N; n0 += chunk) {
    const int64_t nc = std::min(chunk, N - n0), rowPos = nc * Wp, positions = Hp * rowPos;
    // (+32: the last window tile reads up to 23 floats past the last window, into zeros)
    padded.assign(static_cast<size_t>((positions + 2 * P) * C + 32), 0.0f);
    float* xt = padded.data() + P * C;
    for (int64_t r = 0; r < H; r++) {
      for (int64_t n = 0; n < nc; n++) {
        std::memcpy(xt + (r * rowPos + n * Wp) * C, x + (((n0 + n) * H + r) * W) * C, W * C * sizeof(float));
      }
    }
#ifdef __AVX512F__
    if (avx512) {
      // Each region directly from its own positions (the image columns only): the runs of one row (r, n) and column
      // segment, in groups of about 128 positions so that a group's inputs and windows stay in L1 across its tiles.
      // One task per (region, vertical shift): each adds to its own products, so the tasks share the threads (the
      // central region of a 5×5 'same' kernel holds over half the positions: split by shift, no task is over 12 %).
      const int64_t tasks = RS * CS * KH;
#pragma omp parallel for schedule(dynamic, 1) if (parallel)
      for (int64_t task = 0; task < tasks; task++) {
        const int64_t dy = task % KH, rs = task / KH / CS, cs = task / KH % CS;
        thread_local std::vector<int64_t> runs;  // the [q0, q1) runs of the region's positions
        runs.clear();
        for (int64_t r = rows.edges[rs]; r < rows.edges[rs + 1]; r++) {
          for (int64_t n = 0; n < nc; n++) {
            const int64_t q = r * rowPos + n * Wp;
            runs.push_back(q + cols.edges[cs]);
            runs.push_back(q + cols.edges[cs + 1]);
          }
        }
        const int64_t nruns = static_cast<int64_t>(runs.size() / 2), width = cols.edges[cs + 1] - cols.edges[cs];
        const int64_t group = std::max<int64_t>(1, 128 / width);
        float* reg = regions0 + ((dy * RS + rs) * CS + cs) * R;
        for (int64_t g0 = 0; g0 < nruns; g0 += group) {
          regionTiles(xt, C, SC, (dy * rowPos - P) * C, runs.data() + 2 * g0, std::min(group, nruns - g0), reg);
        }
      }
      continue;
    }
#endif
    win.resize(static_cast<size_t>(positions * SC));
    for (int64_t q = 0; q < positions; q++) std::memcpy(win.data() + q * SC, xt + (q - P) * C, SC * sizeof(float));
    for (int64_t dy = 0; dy < KH; dy++) {
      const float* below = win.data() + dy * rowPos * SC;
      for (int64_t rs = 0; rs < RS; rs++) {
        const int64_t r0 = rows.edges[rs], r1 = rows.edges[rs + 1];
        const float* u = xt + r0 * rowPos * C;
        const float* w = below + r0 * rowPos * SC;
        // Winᵀ·U row-major, (2KW−1)C × C, is column-major C × (2KW−1)C: sgemm('N', 'T') of the two stored matrices
        // (one region's entry (c, c2) of horizontal shift slot s is at (s·C + c2)·C + c), added to the region
        const int m = static_cast<int>((r1 - r0) * rowPos);
        float* regions = region.data() + (dy * RS + rs) * CS * R;
        float* wideOut = regions + wide * R;
        sgemm_("N", "T", &c32, &sc32, &m, &alpha, u, &c32, w, &sc32, &alpha, wideOut, &c32);
        for (int64_t cs = 0; cs < CS; cs++) {
          if (cs == wide) continue;
          float* reg = regions + cs * R;
          for (int64_t c = cols.edges[cs]; c < cols.edges[cs + 1]; c++) {
            // one image column c: rows (r, n) at a stride of Wp positions
            const int mr = static_cast<int>((r1 - r0) * nc), ldu = static_cast<int>(Wp * C), ldw = static_cast<int>(Wp * SC);
            sgemm_("N", "T", &c32, &sc32, &mr, &alpha, u + c * C, &ldu, w + c * SC, &ldw, &zero, one.data(), &c32);
            for (int64_t e = 0; e < R; e++) {
              reg[e] += one[e];
              wideOut[e] -= one[e];
            }
          }
        }
      }
    }
  }
  // Per vertical shift dy and horizontal shift dx (window slot dx + KW − 1: C×C entries of every region), the 2-D
  // prefix sums over the regions, float64: prefix[a][b] = Σ_{rs < a, cs < b} region[rs][cs] (one slot at a time, so
  // that they stay in cache), then every tap pair (i, j) ≤ (i + dy, j + dx) over the rectangle of tap (i, j).
  const int64_t CC = C * C;
  // one task per shift (dy, dx): it reads its slot of every region and writes its own tap pairs' blocks, with its
  // thread's prefix sums and block
  const int64_t shifts = KH * (2 * KW - 1);
#pragma omp parallel if (parallel)
  {
    thread_local std::vector<double> prefix;
    thread_local std::vector<float> blk;
    // (the prefix sums' row a = 0 and column b = 0 are zero; the other blocks are written for every shift)
    prefix.resize(static_cast<size_t>((RS + 1) * (CS + 1) * CC));
    for (int64_t a = 0; a <= RS; a++) {
      for (int64_t b = 0; b <= CS; b++) {
        if (a == 0 || b == 0) std::fill_n(prefix.data() + (a * (CS + 1) + b) * CC, CC, 0.0);
      }
    }
    blk.resize(static_cast<size_t>(CC));
#pragma omp for schedule(dynamic, 1)
    for (int64_t sh = 0; sh < shifts; sh++) {
      const int64_t dy = sh / (2 * KW - 1), dx = sh % (2 * KW - 1) - (KW - 1);
      if (dy == 0 && dx < 0) continue;  // (the transposes of dy = 0, dx > 0)
      const int64_t slot = (dx + P) * CC;
      for (int64_t a = 1; a <= RS; a++) {
        for (int64_t b = 1; b <= CS; b++) {
          double* p = prefix.data() + (a * (CS + 1) + b) * CC;
          const double* pu = prefix.data() + ((a - 1) * (CS + 1) + b) * CC;
          const double* pl = prefix.data() + (a * (CS + 1) + b - 1) * CC;
          const double* pd = prefix.data() + ((a - 1) * (CS + 1) + b - 1) * CC;
          const float* reg = regions0 + ((dy * RS + a - 1) * CS + b - 1) * R + slot;
          for (int64_t e = 0; e < CC; e++) p[e] = pu[e] + pl[e] - pd[e] + reg[e];
        }
      }
      for (int64_t i = 0; i + dy < KH; i++) {
        for (int64_t j = std::max<int64_t>(0, -dx); j < KW && j + dx < KW; j++) {
          const auto [a0, a1] = rows.tap[i];
          const auto [b0, b1] = cols.tap[j];
          const int64_t t = i * KW + j, t2 = (i + dy) * KW + (j + dx);
          const double* p11 = prefix.data() + (a1 * (CS + 1) + b1) * CC;
          const double* p01 = prefix.data() + (a0 * (CS + 1) + b1) * CC;
          const double* p10 = prefix.data() + (a1 * (CS + 1) + b0) * CC;
          const double* p00 = prefix.data() + (a0 * (CS + 1) + b0) * CC;
          // block (t2, t) (t2 ≥ t): blk[c2][c], then written as block (t2, t) and, transposed, as block (t, t2), both
          // in memory order (the transpose read from blk in cache); a diagonal block (t = t2) from its lower half
          for (int64_t c2 = 0; c2 < C; c2++) {
            const int64_t e = c2 * C;
            for (int64_t c = 0; c < C; c++) blk[e + c] = static_cast<float>(p11[e + c] - p01[e + c] - p10[e + c] + p00[e + c]);
          }
          if (t == t2) {
            for (int64_t c2 = 0; c2 < C; c2++) {
              for (int64_t c = 0; c < c2; c++) blk[c * C + c2] = blk[c2 * C + c];
            }
          }
          for (int64_t c2 = 0; c2 < C; c2++) std::memcpy(out + (t2 * C + c2) * K + t * C, blk.data() + c2 * C, C * sizeof(float));
          if (t != t2) {
            for (int64_t c = 0; c < C; c++) {
              float* o = out + (t * C + c) * K + t2 * C;
              for (int64_t c2 = 0; c2 < C; c2++) o[c2] = blk[c2 * C + c];
            }
          }
        }
      }
    }
  }
  return info.Env().Undefined();
}

// linalgThreads(k?: number) → the OpenBLAS thread count of these calls (after setting it to k when given).
Napi::Value LinalgThreads(const Napi::CallbackInfo& info) {
  if (info.Length() > 0 && !info[0].IsUndefined()) {
    const int k = std::max(1, info[0].As<Napi::Number>().Int32Value());
    std::call_once(gInit, [] {});
    std::unique_lock<std::shared_mutex> w(gLapackLock);
    gThreads.store(k);
    if (!openblasUsesOpenMP()) openblas_set_num_threads(k);
  }
  return Napi::Number::New(info.Env(), gThreads.load());
}

}  // namespace dk
