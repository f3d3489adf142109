// Elementwise kernels of the backward pass.
//
// reluGrad: dx = dy · step(x) with tfjs's semantics (step(x) = 1 for x > 0, 0 otherwise, NaN for NaN), one pass
// instead of tfjs's Cast + Step + Multiply. It serves the gradients of Relu (x = its input) and of the fused
// kernels' relu (x = their output: the same derivative).
#include <omp.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <vector>

#include "common.h"

namespace dk {

// relu(heap, x, y, n): max(0, x) as tfjs's cpu kernel: NaN passes through, −0 becomes 0
Napi::Value Relu(const Napi::CallbackInfo& info) {
  auto heap = info[0].As<Napi::ArrayBuffer>();
  const float* x = heapF32(heap, info[1]);
  float* y = heapF32(heap, info[2]);
  const int64_t n = static_cast<int64_t>(info[3].As<Napi::Number>().DoubleValue());
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0.0f || std::isnan(x[i]) ? x[i] : 0.0f;
  return info.Env().Undefined();
}

// reluGrad(heap, dy, x, dx, n)
Napi::Value ReluGrad(const Napi::CallbackInfo& info) {
  auto heap = info[0].As<Napi::ArrayBuffer>();
  const float* dy = heapF32(heap, info[1]);
  const float* x = heapF32(heap, info[2]);
  float* dx = heapF32(heap, info[3]);
  const int64_t n = static_cast<int64_t>(info[4].As<Napi::Number>().DoubleValue());
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; i++) {
    const float s = x[i] > 0.0f ? 1.0f : (std::isnan(x[i]) ? x[i] : 0.0f);
    dx[i] = dy[i] * s;
  }
  return info.Env().Undefined();
}

}  // namespace dk

namespace dk {

// Concatenation and its inverse along one axis, as blocked copies: every tensor is viewed as [outer, inner_i] with
// inner_i = (its size along the axis) × (the product of the later dimensions); the output row is the inputs' rows
// side by side.
// concat(heap, out, inputs: Float64Array of offsets, inners: Int32Array, outer)
Napi::Value Concat(const Napi::CallbackInfo& info) {
  auto heap = info[0].As<Napi::ArrayBuffer>();
  float* out = heapF32(heap, info[1]);
  auto offs = info[2].As<Napi::Float64Array>();
  auto inners = info[3].As<Napi::Int32Array>();
  const int64_t outer = static_cast<int64_t>(info[4].As<Napi::Number>().DoubleValue());
  const size_t k = offs.ElementLength();
  std::vector<const float*> src(k);
  int64_t row = 0;
  for (size_t i = 0; i < k; i++) {
    src[i] = reinterpret_cast<const float*>(static_cast<uint8_t*>(heap.Data()) + static_cast<size_t>(offs[i]));
    row += inners[i];
  }
#pragma omp parallel for schedule(static) if (outer * row >= kParallelMin)
  for (int64_t r = 0; r < outer; r++) {
    float* o = out + r * row;
    for (size_t i = 0; i < k; i++) {
      const int64_t n = inners[i];
      std::memcpy(o, src[i] + r * n, n * sizeof(float));
      o += n;
    }
  }
  return info.Env().Undefined();
}

// split(heap, x, outputs: Float64Array of offsets, inners: Int32Array, outer)
Napi::Value Split(const Napi::CallbackInfo& info) {
  auto heap = info[0].As<Napi::ArrayBuffer>();
  const float* x = heapF32(heap, info[1]);
  auto offs = info[2].As<Napi::Float64Array>();
  auto inners = info[3].As<Napi::Int32Array>();
  const int64_t outer = static_cast<int64_t>(info[4].As<Napi::Number>().DoubleValue());
  const size_t k = offs.ElementLength();
  std::vector<float*> dst(k);
  int64_t row = 0;
  for (size_t i = 0; i < k; i++) {
    dst[i] = reinterpret_cast<float*>(static_cast<uint8_t*>(heap.Data()) + static_cast<size_t>(offs[i]));
    row += inners[i];
  }
#pragma omp parallel for schedule(static) if (outer * row >= kParallelMin)
  for (int64_t r = 0; r < outer; r++) {
    const float* s = x + r * row;
    for (size_t i = 0; i < k; i++) {
      const int64_t n = inners[i];
      std::memcpy(dst[i] + r * n, s, n * sizeof(float));
      s += n;
    }
  }
  return info.Env().Undefined();
}

}  // namespace dk

namespace dk {

// reduceMiddle(heap, x, out, outer, reduced, inner, scale): out[a, i] = scale · Σ_r x[a, r, i], accumulated in
// double (Sum / Mean over one contiguous block of axes that is not the innermost: bias gradients, moments).
Napi::Value ReduceMiddle(const Napi::CallbackInfo& info) {
  auto heap = info[0].As<Napi::ArrayBuffer>();
  const float* x = heapF32(heap, info[1]);
  float* out = heapF32(heap, info[2]);
  const int64_t outer = static_cast<int64_t>(info[3].As<Napi::Number>().DoubleValue());
  const int64_t reduced = static_cast<int64_t>(info[4].As<Napi::Number>().DoubleValue());
  const int64_t inner = static_cast<int64_t>(info[5].As<Napi::Number>().DoubleValue());
  const double scale = info[6].As<Napi::Number>().DoubleValue();
  const bool big = outer * reduced * inner >= kParallelMin;
  auto rows = [&](const float* xa, int64_t r0, int64_t r1, double* acc) {
    for (int64_t r = r0; r < r1; r++) {
      const float* row = xa + r * inner;
      for (int64_t i = 0; i < inner; i++) acc[i] += row[i];
    }
  };
  if (outer > 1) {
    // one output row per iteration
#pragma omp parallel for schedule(static) if (big)
    for (int64_t a = 0; a < outer; a++) {
      std::vector<double> acc(inner, 0.0);
      rows(x + a * reduced * inner, 0, reduced, acc.data());
      for (int64_t i = 0; i < inner; i++) out[a * inner + i] = static_cast<float>(acc[i] * scale);
    }
  } else {
    // one output row: the reduced rows split between threads, partial sums added at the end
    std::vector<double> acc(inner, 0.0);
#pragma omp parallel if (big)
    {
      std::vector<double> part(inner, 0.0);
      const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
      rows(x, reduced * t / nt, reduced * (t + 1) / nt, part.data());
#pragma omp critical
      for (int64_t i = 0; i < inner; i++) acc[i] += part[i];
    }
    for (int64_t i = 0; i < inner; i++) out[i] = static_cast<float>(acc[i] * scale);
  }
  return info.Env().Undefined();
}

/** Binary operation codes shared with src/backend/native-kernels.ts (`BINARY_OPS`). */
enum Binary : int32_t { kAdd = 0, kSub = 1, kMul = 2, kRsub = 3, kDiv = 4, kRdiv = 5 };

// binary(heap, a, b, out, n, nb, op): out[i] = a[i] op b[i mod nb] (b broadcast along the leading axes of a;
// nb = n for equal shapes, 1 for a scalar). kRsub is b − a and kRdiv b / a, for a broadcast minuend or dividend.
template <typename F>
void binaryLoop(const float* a, const float* b, float* out, int64_t n, int64_t nb, F f) {
  if (nb == 1) {
    // a scalar operand: one flat loop (one row per element would cost a dispatch per element, measured 1.7 ms for
    // 2²⁰ products, ×5 the flat loop's)
    const float s = b[0];
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
    for (int64_t i = 0; i < n; i++) out[i] = f(a[i], s);
    return;
  }
  const int64_t rows = n / nb;
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t r = 0; r < rows; r++) {
    const float* ar = a + r * nb;
    float* o = out + r * nb;
#pragma omp simd
    for (int64_t i = 0; i < nb; i++) o[i] = f(ar[i], b[i]);
  }
}

Napi::Value BinaryOp(const Napi::CallbackInfo& info) {
  auto heap = info[0].As<Napi::ArrayBuffer>();
  const float* a = heapF32(heap, info[1]);
  const float* b = heapF32(heap, info[2]);
  float* out = heapF32(heap, info[3]);
  const int64_t n = static_cast<int64_t>(info[4].As<Napi::Number>().DoubleValue());
  const int64_t nb = static_cast<int64_t>(info[5].As<Napi::Number>().DoubleValue());
  const int32_t op = info[6].As<Napi::Number>().Int32Value();
  switch (op) {
    case kAdd: binaryLoop(a, b, out, n, nb, [](float x, float y) { return x + y; }); break;
    case kSub: binaryLoop(a, b, out, n, nb, [](float x, float y) { return x - y; }); break;
    case kMul: binaryLoop(a, b, out, n, nb, [](float x, float y) { return x * y; }); break;
    case kRsub: binaryLoop(a, b, out, n, nb, [](float x, float y) { return y - x; }); break;
    case kDiv: binaryLoop(a, b, out, n, nb, [](float x, float y) { return x / y; }); break;
    case kRdiv: binaryLoop(a, b, out, n, nb, [](float x, float y) { return y / x; }); break;
    default: break;
  }
  return info.Env().Undefined();
}

}  // namespace dk

namespace dk {

// tile(heap, x, out, xShape: Int32Array, reps: Int32Array): tfjs's Tile (out shape = xShape[i]·reps[i]) by block
// copies: the innermost axis is copied whole and repeated, every outer axis repeats the block below it.
Napi::Value Tile(const Napi::CallbackInfo& info) {
  auto heap = info[0].As<Napi::ArrayBuffer>();
  const float* x = heapF32(heap, info[1]);
  float* out = heapF32(heap, info[2]);
  auto shapeArr = info[3].As<Napi::Int32Array>();
  auto repsArr = info[4].As<Napi::Int32Array>();
  const size_t r = shapeArr.ElementLength();
  std::vector<int64_t> shape(r), reps(r);
  for (size_t i = 0; i < r; i++) {
    shape[i] = shapeArr[i];
    reps[i] = repsArr[i];
  }
  // inner[i]: elements of x below axis i; outInner[i]: elements of out below axis i
  std::vector<int64_t> inner(r + 1, 1), outInner(r + 1, 1);
  for (size_t i = r; i-- > 0;) {
    inner[i] = inner[i + 1] * shape[i];
    outInner[i] = outInner[i + 1] * shape[i] * reps[i];
  }
  // rec(axis, src, dst): writes the [shape[axis]·reps[axis], ...] block of out from the [shape[axis], ...] block of x
  std::function<void(size_t, const float*, float*)> rec = [&](size_t axis, const float* src, float* dst) {
    if (axis == r) {
      *dst = *src;
      return;
    }
    const int64_t block = outInner[axis + 1];
    if (axis + 1 == r) {
      for (int64_t j = 0; j < shape[axis]; j++) dst[j] = src[j];
    } else {
      for (int64_t j = 0; j < shape[axis]; j++) rec(axis + 1, src + j * inner[axis + 1], dst + j * block);
    }
    const int64_t once = shape[axis] * block;
    for (int64_t k = 1; k < reps[axis]; k++) std::memcpy(dst + k * once, dst, once * sizeof(float));
  };
  if (r == 0) {
    out[0] = x[0];
  } else {
    rec(0, x, out);
  }
  return info.Env().Undefined();
}

}  // namespace dk
