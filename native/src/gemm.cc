// Batched matrix products on oneDNN's matmul primitive, with tfjs BatchMatMul / _FusedMatMul semantics:
// a [batchA, M, K] (or [batchA, K, M] with transposeA), b [batchB, K, N] (or [batchB, N, K]), one of the batch counts
// may be 1 (broadcast), out [max(batchA, batchB), M, N]; optional bias [N] added to every row and an activation as a
// post-op, as _FusedMatMul does. Transposes are strides of the operands' memory descriptors (no copy).
//
// Why the primitive and not dnnl_sgemm: in oneDNN 2.6.3 dnnl_sgemm corrupted the C heap when a signal (V8's CPU
// profiler's SIGPROF) interrupted it; the primitive shares the convolutions' OpenMP team and primitive cache.
//
// dims (Int32Array): [batchA, batchB, M, N, K, transposeA, transposeB]
#include <algorithm>

#include "common.h"

namespace dk {
namespace {

using namespace dnnl;
using dt = memory::data_type;

struct Product {
  matmul::primitive_desc pd;
  matmul prim;
  memory a, b, out, bias;
  Product(const int32_t* d, bool withBias, int32_t act, float alpha)
      : pd(make(d, withBias, act, alpha)),
        prim(pd),
        a(pd.src_desc(), ctx().eng, DNNL_MEMORY_NONE),
        b(pd.weights_desc(), ctx().eng, DNNL_MEMORY_NONE),
        out(pd.dst_desc(), ctx().eng, DNNL_MEMORY_NONE),
        bias(withBias ? pd.bias_desc() : memory::desc(), ctx().eng, DNNL_MEMORY_NONE) {}

  static matmul::primitive_desc make(const int32_t* d, bool withBias, int32_t act, float alpha) {
    const memory::dim batchA = d[0], batchB = d[1], m = d[2], n = d[3], k = d[4];
    const bool ta = d[5] != 0, tb = d[6] != 0;
    const memory::desc a({batchA, m, k}, dt::f32, ta ? memory::dims{m * k, 1, m} : memory::dims{m * k, k, 1});
    const memory::desc b({batchB, k, n}, dt::f32, tb ? memory::dims{k * n, 1, k} : memory::dims{k * n, n, 1});
    const memory::dim batch = std::max(batchA, batchB);
    const memory::desc out({batch, m, n}, dt::f32, memory::dims{m * n, n, 1});
    primitive_attr attr;
    attr.set_post_ops(activationPostOps(act, alpha));
    if (withBias) {
      const memory::desc bias({1, 1, n}, dt::f32, memory::dims{n, n, 1});
      return matmul::primitive_desc(matmul::desc(a, b, bias, out), attr, ctx().eng);
    }
    return matmul::primitive_desc(matmul::desc(a, b, out), attr, ctx().eng);
  }
};

}  // namespace

// gemm(heap, a, b, out, dims, bias | -1, activation, alpha)
Napi::Value Gemm(const Napi::CallbackInfo& info) {
  auto heap = info[0].As<Napi::ArrayBuffer>();
  const int32_t* d = dimsOf(info[4], 7, "gemm");
  float* bias = heapF32OrNull(heap, info[5]);
  const int32_t act = info[6].As<Napi::Number>().Int32Value();
  const float alpha = info[7].As<Napi::Number>().FloatValue();
  float* out = heapF32(heap, info[3]);
  if (d[4] == 0) {
    // an empty sum: zeros (then bias and activation)
    const int64_t batch = std::max(d[0], d[1]), m = d[2], n = d[3];
    for (int64_t i = 0; i < batch * m; i++)
      for (int64_t j = 0; j < n; j++) out[i * n + j] = bias ? bias[j] : 0.0f;
    activate(out, static_cast<size_t>(batch * m * n), act, alpha);
    return info.Env().Undefined();
  }
  auto& p = cached<Product>(keyOf(bias ? "mm+b" : "mm", d, 7, act * 1e3 + alpha),
                            [&] { return Product(d, bias != nullptr, act, alpha); });
  auto& c = ctx();
  c.impls["matmul"] = p.pd.impl_info_str();
  p.a.set_data_handle(heapF32(heap, info[1]));
  p.b.set_data_handle(heapF32(heap, info[2]));
  p.out.set_data_handle(out);
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, p.a}, {DNNL_ARG_WEIGHTS, p.b}, {DNNL_ARG_DST, p.out}};
  if (bias) {
    p.bias.set_data_handle(bias);
    args.emplace(DNNL_ARG_BIAS, p.bias);
  }
  p.prim.execute(c.strm, args);
  c.strm.wait();
  return info.Env().Undefined();
}

}  // namespace dk
