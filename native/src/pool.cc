// Pooling gradients in NHWC with the semantics of tfjs's cpu kernels:
// - MaxPoolGrad: each output's gradient goes to the FIRST maximum of its window in row-major window order (strict
//   `>` from −∞, as TensorFlow and tfjs's cpu kernel); overlapping windows add up. Windows with NaN route their
//   gradient like the strict comparison does.
// - AvgPoolGrad: every input of a window gets dy / (kh·kw), the full window size, as tfjs's kernel does (the
//   project's AvgPool gradient corrects the 'same'-padding borders before calling it: src/backend/avgpool-grad.ts).
//
// dims (Int32Array): [N, H, W, C, Ho, Wo, KH, KW, strideH, strideW, padTop, padLeft]
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "common.h"

namespace dk {
namespace {

struct Pool {
  int64_t n, h, w, c, ho, wo, kh, kw, sh, sw, top, left;
  explicit Pool(const int32_t* d)
      : n(d[0]), h(d[1]), w(d[2]), c(d[3]), ho(d[4]), wo(d[5]), kh(d[6]), kw(d[7]), sh(d[8]), sw(d[9]), top(d[10]),
        left(d[11]) {}

  /**
   * For every output window (i, j) of image b: f(i, j, rMin, rMax, cMin, cMax), the window's rows and columns
   * clipped to the input (the padding holds no inputs).
   */
  template <typename F>
  void windows(F&& f) const {
    for (int64_t i = 0; i < ho; i++) {
      const int64_t r0 = i * sh - top;
      const int64_t rMin = std::max<int64_t>(0, r0), rMax = std::min(h, r0 + kh);
      for (int64_t j = 0; j < wo; j++) {
        const int64_t c0 = j * sw - left;
        f(i, j, rMin, rMax, std::max<int64_t>(0, c0), std::min(w, c0 + kw));
      }
    }
  }
};

constexpr size_t kPoolDims = 12;

/**
 * The maximum of one window per channel into best[0..C) (from −∞, strict `>`: the first maximum in row-major window
 * order wins, NaN never does), and with `pos` its offset in the image (−1 where none).
 */
inline void windowMax(const Pool& p, const float* xb, int64_t rMin, int64_t rMax, int64_t cMin, int64_t cMax, float* best,
                      int64_t* pos) {
  const int64_t C = p.c;
  std::fill(best, best + C, -std::numeric_limits<float>::infinity());
  if (pos) std::fill(pos, pos + C, -1);
  for (int64_t r = rMin; r < rMax; r++) {
    for (int64_t q = cMin; q < cMax; q++) {
      const int64_t base = (r * p.w + q) * C;
      const float* xv = xb + base;
      for (int64_t k = 0; k < C; k++) {
        const bool more = xv[k] > best[k];
        best[k] = more ? xv[k] : best[k];
        if (pos) pos[k] = more ? base + k : pos[k];
      }
    }
  }
}

}  // namespace

// maxPool(heap, x, y, dims): the maximum of each window over the inputs it covers (padding holds none), by the
// strict comparison from −∞ of tfjs's cpu kernel (and of maxPoolGrad below: the maximum it routes to is this one)
Napi::Value MaxPool(const Napi::CallbackInfo& info) {
  auto heap = info[0].As<Napi::ArrayBuffer>();
  const Pool p(dimsOf(info[3], kPoolDims, "maxPool"));
  const float* x = heapF32(heap, info[1]);
  float* y = heapF32(heap, info[2]);
  const int64_t C = p.c;
#pragma omp parallel for schedule(static) if (p.n * p.h * p.w * C >= kParallelMin)
  for (int64_t b = 0; b < p.n; b++) {
    const float* xb = x + b * p.h * p.w * C;
    p.windows([&](int64_t i, int64_t j, int64_t rMin, int64_t rMax, int64_t cMin, int64_t cMax) {
      windowMax(p, xb, rMin, rMax, cMin, cMax, y + ((b * p.ho + i) * p.wo + j) * C, nullptr);
    });
  }
  return info.Env().Undefined();
}

// maxPoolGrad(heap, dy, x, dx, dims)
Napi::Value MaxPoolGrad(const Napi::CallbackInfo& info) {
  auto heap = info[0].As<Napi::ArrayBuffer>();
  const Pool p(dimsOf(info[4], kPoolDims, "maxPoolGrad"));
  const float* dy = heapF32(heap, info[1]);
  const float* x = heapF32(heap, info[2]);
  float* dx = heapF32(heap, info[3]);
  const int64_t C = p.c;
  // Images are independent: one image per iteration, each thread with its own argmax scratch.
#pragma omp parallel if (p.n * p.h * p.w * C >= kParallelMin)
  {
    std::vector<float> best(C);
    std::vector<int64_t> pos(C);
#pragma omp for schedule(static)
    for (int64_t b = 0; b < p.n; b++) {
      float* dxb = dx + b * p.h * p.w * C;
      std::fill(dxb, dxb + p.h * p.w * C, 0.0f);
      const float* xb = x + b * p.h * p.w * C;
      p.windows([&](int64_t i, int64_t j, int64_t rMin, int64_t rMax, int64_t cMin, int64_t cMax) {
        const float* g = dy + ((b * p.ho + i) * p.wo + j) * C;
        windowMax(p, xb, rMin, rMax, cMin, cMax, best.data(), pos.data());
        for (int64_t k = 0; k < C; k++) {
          if (pos[k] >= 0) dxb[pos[k]] += g[k];
        }
      });
    }
  }
  return info.Env().Undefined();
}

// avgPoolGrad(heap, dy, dx, dims)
Napi::Value AvgPoolGrad(const Napi::CallbackInfo& info) {
  auto heap = info[0].As<Napi::ArrayBuffer>();
  const Pool p(dimsOf(info[3], kPoolDims, "avgPoolGrad"));
  const float* dy = heapF32(heap, info[1]);
  float* dx = heapF32(heap, info[2]);
  const int64_t C = p.c;
  const float scale = 1.0f / static_cast<float>(p.kh * p.kw);
#pragma omp parallel for schedule(static) if (p.n * p.h * p.w * C >= kParallelMin)
  for (int64_t b = 0; b < p.n; b++) {
    float* dxb = dx + b * p.h * p.w * C;
    std::fill(dxb, dxb + p.h * p.w * C, 0.0f);
    p.windows([&](int64_t i, int64_t j, int64_t rMin, int64_t rMax, int64_t cMin, int64_t cMax) {
      const float* g = dy + ((b * p.ho + i) * p.wo + j) * C;
      for (int64_t r = rMin; r < rMax; r++) {
        for (int64_t q = cMin; q < cMax; q++) {
          float* d = dxb + (r * p.w + q) * C;
          for (int64_t k = 0; k < C; k++) d[k] += g[k] * scale;
        }
      }
    });
  }
  return info.Env().Undefined();
}

}  // namespace dk

namespace dk {

// Patch extraction (im2col) in tfjs's NHWC layout for K-FAC's KFC factors: out[n, y, x, (i·kw + j)·C + c] =
// x[n, y·sh + i − padTop, x·sw + j − padLeft, c], zero in the padding. One pass writing every patch row once
// (instead of kh·kw strided slices and a concatenation).
// patches(heap, x, out, dims = [N, H, W, C, Ho, Wo, KH, KW, strideH, strideW, padTop, padLeft])
Napi::Value Patches(const Napi::CallbackInfo& info) {
  auto heap = info[0].As<Napi::ArrayBuffer>();
  const int32_t* d = dimsOf(info[3], 12, "patches");
  const int64_t n = d[0], h = d[1], w = d[2], C = d[3], ho = d[4], wo = d[5], kh = d[6], kw = d[7], sh = d[8],
                sw = d[9], top = d[10], left = d[11];
  const float* x = heapF32(heap, info[1]);
  float* out = heapF32(heap, info[2]);
  const int64_t K = kh * kw * C;
#pragma omp parallel for schedule(static) if (n * ho * wo * K >= kParallelMin)
  for (int64_t b = 0; b < n; b++) {
    for (int64_t y = 0; y < ho; y++) {
      for (int64_t q = 0; q < wo; q++) {
        float* o = out + ((b * ho + y) * wo + q) * K;
        for (int64_t i = 0; i < kh; i++) {
          const int64_t r = y * sh + i - top;
          for (int64_t j = 0; j < kw; j++, o += C) {
            const int64_t col = q * sw + j - left;
            if (r < 0 || r >= h || col < 0 || col >= w) {
              std::fill(o, o + C, 0.0f);
            } else {
              std::memcpy(o, x + ((b * h + r) * w + col) * C, C * sizeof(float));
            }
          }
        }
      }
    }
  }
  return info.Env().Undefined();
}

}  // namespace dk

namespace dk {

// Per-example sums of the conv patches (K-FAC's cheap Appendix-A factors) without materialising them:
// out[n, (i·kw + j)·C + c] = Σ_{y<Ho, x<Wo} xpad[n, y·sh + i, x·sw + j, c] (zero padding contributes nothing).
// Separable: first the sums along x for every input row r and tap column j, then along y for every tap row i; with
// stride 1 each is a range of columns (rows), read off prefix sums in float64 (O(H·W·C) per example instead of
// O(H·KW·Wo·C)).
// patchSums(heap, x, out, dims = [N, H, W, C, Ho, Wo, KH, KW, strideH, strideW, padTop, padLeft])
Napi::Value PatchSums(const Napi::CallbackInfo& info) {
  auto heap = info[0].As<Napi::ArrayBuffer>();
  const int32_t* d = dimsOf(info[3], 12, "patchSums");
  const int64_t n = d[0], h = d[1], w = d[2], C = d[3], ho = d[4], wo = d[5], kh = d[6], kw = d[7], sh = d[8],
                sw = d[9], top = d[10], left = d[11];
  const float* x = heapF32(heap, info[1]);
  float* out = heapF32(heap, info[2]);
#pragma omp parallel if (n * h * w * C >= kParallelMin)
  {
    std::vector<double> rows(static_cast<size_t>(h * kw * C));  // [r, j, c]: Σ_x xpad[r, x·sw + j, c]
    std::vector<double> acc(static_cast<size_t>(C));
    // stride 1: each sum is over a range, read off prefix sums (along a row: [col, c]; down the rows: [r, j, c])
    std::vector<double> pre(static_cast<size_t>(sw == 1 ? (w + 1) * C : 0)), down(static_cast<size_t>(sh == 1 ? (h + 1) * kw * C : 0));
    const auto range = [](int64_t lo, int64_t n, int64_t size) {
      return std::pair<int64_t, int64_t>{std::clamp<int64_t>(lo, 0, size), std::clamp<int64_t>(lo + n, 0, size)};
    };
#pragma omp for schedule(static)
    for (int64_t b = 0; b < n; b++) {
      const float* xb = x + b * h * w * C;
      std::fill(rows.begin(), rows.end(), 0.0);
      for (int64_t r = 0; r < h && sw == 1; r++) {
        for (int64_t col = 0; col < w; col++) {
          const float* src = xb + (r * w + col) * C;
          double* p = pre.data() + (col + 1) * C;
          for (int64_t c = 0; c < C; c++) p[c] = p[c - C] + src[c];
        }
        for (int64_t j = 0; j < kw; j++) {
          const auto [lo, hi] = range(j - left, wo, w);
          double* dst = rows.data() + (r * kw + j) * C;
          for (int64_t c = 0; c < C; c++) dst[c] = pre[hi * C + c] - pre[lo * C + c];
        }
      }
      for (int64_t r = 0; r < h && sw != 1; r++) {
        for (int64_t j = 0; j < kw; j++) {
          double* dst = rows.data() + (r * kw + j) * C;
          for (int64_t q = 0; q < wo; q++) {
            const int64_t col = q * sw + j - left;
            if (col < 0 || col >= w) continue;
            const float* src = xb + (r * w + col) * C;
            for (int64_t c = 0; c < C; c++) dst[c] += src[c];
          }
        }
      }
      float* ob = out + b * kh * kw * C;
      if (sh == 1) {
        for (int64_t e = 0; e < h * kw * C; e++) down[kw * C + e] = down[e] + rows[e];
        for (int64_t i = 0; i < kh; i++) {
          const auto [lo, hi] = range(i - top, ho, h);
          for (int64_t e = 0; e < kw * C; e++) ob[i * kw * C + e] = static_cast<float>(down[hi * kw * C + e] - down[lo * kw * C + e]);
        }
        continue;
      }
      for (int64_t i = 0; i < kh; i++) {
        for (int64_t j = 0; j < kw; j++) {
          std::fill(acc.begin(), acc.end(), 0.0);
          for (int64_t y = 0; y < ho; y++) {
            const int64_t r = y * sh + i - top;
            if (r < 0 || r >= h) continue;
            const double* src = rows.data() + (r * kw + j) * C;
            for (int64_t c = 0; c < C; c++) acc[c] += src[c];
          }
          float* o = ob + (i * kw + j) * C;
          for (int64_t c = 0; c < C; c++) o[c] = static_cast<float>(acc[c]);
        }
      }
    }
  }
  return info.Env().Undefined();
}

}  // namespace dk
