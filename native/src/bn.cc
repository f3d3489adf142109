// Batch normalisation over chunks of examples (the paper's rbz), forward and backward in one pass each.
//
// x is viewed as [G, M, C]: G chunks of M = chunk·H·W positions (NHWC) and C channels. Per chunk and channel:
//   mean, var (biased, as tf.moments), x̂ = (x − mean)/sqrt(var + eps), y = γ x̂ + β.
// Backward, from dy and the saved x̂, γ, var:
//   dβ = Σ dy,  dγ = Σ dy x̂  (over all chunks),
//   dx = γ/sqrt(var + eps) · (dy − mean_M(dy) − x̂ · mean_M(dy x̂))  per chunk.
// Sums accumulate in double, one partial vector per thread.
//
// dims (Int32Array): [G, M, C]
#include <omp.h>

#include <cmath>
#include <vector>

#include "common.h"

namespace dk {
namespace {

/** Per-channel sums over rows [0, m) of a [m, C] block: s1 += Σ a, s2 += Σ a·b (b may be null: s2 untouched). */
void channelSums(const float* a, const float* b, int64_t m, int64_t C, double* s1, double* s2) {
#pragma omp parallel if (m * C >= kParallelMin)
  {
    std::vector<double> p1(C, 0.0), p2(C, 0.0);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < m; r++) {
      const float* ar = a + r * C;
      if (b) {
        const float* br = b + r * C;
        for (int64_t k = 0; k < C; k++) {
          p1[k] += ar[k];
          p2[k] += static_cast<double>(ar[k]) * br[k];
        }
      } else {
        for (int64_t k = 0; k < C; k++) p1[k] += ar[k];
      }
    }
#pragma omp critical
    for (int64_t k = 0; k < C; k++) {
      s1[k] += p1[k];
      if (b) s2[k] += p2[k];
    }
  }
}

}  // namespace

// batchNormForward(heap, x, gamma, beta, y, xhat, mean, variance, dims, eps)
Napi::Value BatchNormForward(const Napi::CallbackInfo& info) {
  auto heap = info[0].As<Napi::ArrayBuffer>();
  const int32_t* d = dimsOf(info[8], 3, "batchNormForward");
  const double eps = info[9].As<Napi::Number>().DoubleValue();
  const float* x = heapF32(heap, info[1]);
  const float* gamma = heapF32(heap, info[2]);
  const float* beta = heapF32(heap, info[3]);
  float* y = heapF32(heap, info[4]);
  float* xhat = heapF32(heap, info[5]);
  float* mean = heapF32(heap, info[6]);
  float* var = heapF32(heap, info[7]);
  const int64_t G = d[0], M = d[1], C = d[2];
  std::vector<double> s1(C), s2(C);
  std::vector<float> mu(C), scale(C), rstd(C);
  for (int64_t g = 0; g < G; g++) {
    const float* xg = x + g * M * C;
    std::fill(s1.begin(), s1.end(), 0.0);
    channelSums(xg, nullptr, M, C, s1.data(), nullptr);
    for (int64_t k = 0; k < C; k++) mu[k] = static_cast<float>(s1[k] / M);
    // Second pass for the variance (about the mean: no cancellation).
    std::fill(s2.begin(), s2.end(), 0.0);
#pragma omp parallel if (M * C >= kParallelMin)
    {
      std::vector<double> p(C, 0.0);
#pragma omp for schedule(static)
      for (int64_t r = 0; r < M; r++) {
        const float* xr = xg + r * C;
        for (int64_t k = 0; k < C; k++) {
          const double t = static_cast<double>(xr[k]) - mu[k];
          p[k] += t * t;
        }
      }
#pragma omp critical
      for (int64_t k = 0; k < C; k++) s2[k] += p[k];
    }
    for (int64_t k = 0; k < C; k++) {
      const double v = s2[k] / M;
      mean[g * C + k] = mu[k];
      var[g * C + k] = static_cast<float>(v);
      rstd[k] = static_cast<float>(1.0 / std::sqrt(static_cast<double>(static_cast<float>(v)) + eps));
      scale[k] = rstd[k];
    }
    float* yg = y + g * M * C;
    float* hg = xhat + g * M * C;
#pragma omp parallel for schedule(static) if (M * C >= kParallelMin)
    for (int64_t r = 0; r < M; r++) {
      const float* xr = xg + r * C;
      float* hr = hg + r * C;
      float* yr = yg + r * C;
      for (int64_t k = 0; k < C; k++) {
        const float h = (xr[k] - mu[k]) * scale[k];
        hr[k] = h;
        yr[k] = h * gamma[k] + beta[k];
      }
    }
  }
  return info.Env().Undefined();
}

// batchNormBackward(heap, dy, xhat, gamma, variance, dx, dgamma, dbeta, dims, eps)
Napi::Value BatchNormBackward(const Napi::CallbackInfo& info) {
  auto heap = info[0].As<Napi::ArrayBuffer>();
  const int32_t* d = dimsOf(info[8], 3, "batchNormBackward");
  const double eps = info[9].As<Napi::Number>().DoubleValue();
  const float* dy = heapF32(heap, info[1]);
  const float* xhat = heapF32(heap, info[2]);
  const float* gamma = heapF32(heap, info[3]);
  const float* var = heapF32(heap, info[4]);
  float* dx = heapF32(heap, info[5]);
  float* dgamma = heapF32(heap, info[6]);
  float* dbeta = heapF32(heap, info[7]);
  const int64_t G = d[0], M = d[1], C = d[2];
  std::vector<double> tg(C, 0.0), tb(C, 0.0), s1(C), s2(C);
  std::vector<float> a(C), b1(C), b2(C);
  for (int64_t g = 0; g < G; g++) {
    const float* dyg = dy + g * M * C;
    const float* hg = xhat + g * M * C;
    std::fill(s1.begin(), s1.end(), 0.0);
    std::fill(s2.begin(), s2.end(), 0.0);
    channelSums(dyg, hg, M, C, s1.data(), s2.data());
    for (int64_t k = 0; k < C; k++) {
      tb[k] += s1[k];
      tg[k] += s2[k];
      const double rs = 1.0 / std::sqrt(static_cast<double>(var[g * C + k]) + eps);
      a[k] = static_cast<float>(gamma[k] * rs);
      b1[k] = static_cast<float>(s1[k] / M);
      b2[k] = static_cast<float>(s2[k] / M);
    }
    float* dxg = dx + g * M * C;
#pragma omp parallel for schedule(static) if (M * C >= kParallelMin)
    for (int64_t r = 0; r < M; r++) {
      const float* dr = dyg + r * C;
      const float* hr = hg + r * C;
      float* out = dxg + r * C;
      for (int64_t k = 0; k < C; k++) out[k] = a[k] * (dr[k] - b1[k] - hr[k] * b2[k]);
    }
  }
  for (int64_t k = 0; k < C; k++) {
    dgamma[k] = static_cast<float>(tg[k]);
    dbeta[k] = static_cast<float>(tb[k]);
  }
  return info.Env().Undefined();
}

// batchNormApply(heap, x, out, mean, variance, offset, scale, m, C, eps): tfjs's FusedBatchNorm on [m, C] rows with
// [C] statistics (tf.batchNorm, what tf.layers.batchNormalization calls with the batch's or the moving moments):
// out = offset + (x − mean) · scale / sqrt(variance + eps); offset and scale may be absent (offset −1: 0, scale −1: 1).
// The per-channel factor scale / sqrt(variance + eps) is formed once in double.
Napi::Value BatchNormApply(const Napi::CallbackInfo& info) {
  auto heap = info[0].As<Napi::ArrayBuffer>();
  const float* x = heapF32(heap, info[1]);
  float* out = heapF32(heap, info[2]);
  const float* mean = heapF32(heap, info[3]);
  const float* var = heapF32(heap, info[4]);
  const bool hasOffset = info[5].As<Napi::Number>().DoubleValue() >= 0;
  const bool hasScale = info[6].As<Napi::Number>().DoubleValue() >= 0;
  const float* offset = hasOffset ? heapF32(heap, info[5]) : nullptr;
  const float* scale = hasScale ? heapF32(heap, info[6]) : nullptr;
  const int64_t m = static_cast<int64_t>(info[7].As<Napi::Number>().DoubleValue());
  const int64_t C = static_cast<int64_t>(info[8].As<Napi::Number>().DoubleValue());
  const double eps = info[9].As<Napi::Number>().DoubleValue();
  std::vector<float> k(C), b(C);
  for (int64_t c = 0; c < C; c++) {
    const double kc = (hasScale ? static_cast<double>(scale[c]) : 1.0) / std::sqrt(static_cast<double>(var[c]) + eps);
    k[c] = static_cast<float>(kc);
    b[c] = static_cast<float>((hasOffset ? static_cast<double>(offset[c]) : 0.0) - static_cast<double>(mean[c]) * kc);
  }
  const float* kp = k.data();
  const float* bp = b.data();
#pragma omp parallel for schedule(static) if (m * C >= kParallelMin)
  for (int64_t r = 0; r < m; r++) {
    const float* xr = x + r * C;
    float* yr = out + r * C;
#pragma omp simd
    for (int64_t c = 0; c < C; c++) yr[c] = xr[c] * kp[c] + bp[c];
  }
  return info.Env().Undefined();
}

}  // namespace dk
