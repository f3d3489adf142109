// K-FAC's per-step bookkeeping of the factor statistics on float64 arrays (plain JS typed arrays, not the wasm
// heap): the exactly symmetric second moment built from a read-back float32 Gram matrix, the finiteness check, and
// the moving-average fold. Each is one pass over a factor; in JavaScript they were the largest part of a K-FAC
// step's overhead besides the second backward pass (src/kfac/factors.ts, errors.ts, ema.ts keep the same maths as
// the fallback; the file is compiled with -ffp-contract=off so both give the same bits).
#include <cmath>
#include <limits>

#include "common.h"

namespace dk {

// momentFromGram(data: Float32Array, gOff, cOff (−1: none), count, K, out: Float64Array of d², d = K or K+1,
// symmetric?: the Gram is exactly symmetric, as this addon's Gram kernels write it: then (g + gᵀ)/2 is g itself, and
// one pass in memory order writes the same bits (2g·(0.5/count) = g·(1/count): exact scalings by 2) without the
// transposed reads)) → whether every entry written is finite
Napi::Value MomentFromGram(const Napi::CallbackInfo& info) {
  auto data = info[0].As<Napi::Float32Array>();
  const int64_t gOff = static_cast<int64_t>(info[1].As<Napi::Number>().DoubleValue());
  const int64_t cOff = static_cast<int64_t>(info[2].As<Napi::Number>().DoubleValue());
  const double count = info[3].As<Napi::Number>().DoubleValue();
  const int64_t K = static_cast<int64_t>(info[4].As<Napi::Number>().DoubleValue());
  auto outArr = info[5].As<Napi::Float64Array>();
  const int64_t d = cOff >= 0 ? K + 1 : K;
  if (static_cast<int64_t>(outArr.ElementLength()) != d * d || gOff + K * K > static_cast<int64_t>(data.ElementLength())) {
    throw Napi::Error::New(info.Env(), "momentFromGram: array sizes do not match");
  }
  const float* g = data.Data() + gOff;
  double* out = outArr.Data();
  const double half = 0.5 / count;
  const bool symmetric = info.Length() > 6 && info[6].ToBoolean().Value();
  // whether every entry written is finite (the finiteness check, in the same pass: |v| ≤ max is false for ±∞ and NaN;
  // an integer AND, so the loop still vectorises)
  constexpr double kMax = std::numeric_limits<double>::max();
  unsigned ok = 1;
  if (symmetric) {
    for (int64_t i = 0; i < K; i++) {
      const float* gi = g + i * K;
      double* oi = out + i * d;
      for (int64_t j = 0; j < K; j++) {
        const double v = (2.0 * static_cast<double>(gi[j])) * half;
        oi[j] = v;
        ok &= static_cast<unsigned>(std::fabs(v) <= kMax);
      }
    }
  } else {
    // 32×32 tiles of the upper triangle: the transposed reads stay in cache for large K
    upperTriangleTiles(K, 32, false, [&](int64_t i, int64_t j) {
      const double v = (static_cast<double>(g[i * K + j]) + static_cast<double>(g[j * K + i])) * half;
      out[i * d + j] = v;
      out[j * d + i] = v;
      ok &= static_cast<unsigned>(std::fabs(v) <= kMax);
    });
  }
  if (cOff >= 0) {
    const float* c = data.Data() + cOff;
    for (int64_t i = 0; i < K; i++) {
      const double m = static_cast<double>(c[i]) / count;
      out[i * d + K] = m;
      out[K * d + i] = m;
      ok &= static_cast<unsigned>(std::fabs(m) <= kMax);
    }
    out[K * d + K] = 1;
  }
  return Napi::Boolean::New(info.Env(), ok != 0);
}

// allFinite(a: Float64Array) → boolean
Napi::Value AllFinite(const Napi::CallbackInfo& info) {
  auto a = info[0].As<Napi::Float64Array>();
  const double* p = a.Data();
  const size_t n = a.ElementLength();
  // x·0 is 0 for finite x and NaN otherwise; four independent sums, so the adds do not wait on each other
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += p[i] * 0.0;
    s1 += p[i + 1] * 0.0;
    s2 += p[i + 2] * 0.0;
    s3 += p[i + 3] * 0.0;
  }
  for (; i < n; i++) s0 += p[i] * 0.0;
  return Napi::Boolean::New(info.Env(), (s0 + s1) + (s2 + s3) == 0);
}

// emaUpdate(sum: Float64Array, x: Float64Array, decay): sum ← decay·sum + (1 − decay)·x
Napi::Value EmaUpdate(const Napi::CallbackInfo& info) {
  auto sum = info[0].As<Napi::Float64Array>();
  auto x = info[1].As<Napi::Float64Array>();
  const double e = info[2].As<Napi::Number>().DoubleValue();
  if (sum.ElementLength() != x.ElementLength()) throw Napi::Error::New(info.Env(), "emaUpdate: lengths differ");
  double* s = sum.Data();
  const double* v = x.Data();
  const double c = 1 - e;
  const size_t n = sum.ElementLength();
  for (size_t i = 0; i < n; i++) s[i] = e * s[i] + c * v[i];
  return info.Env().Undefined();
}

}  // namespace dk
