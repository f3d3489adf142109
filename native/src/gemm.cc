// Batched matrix products on oneDNN's sgemm (row-major, JIT AVX-512 / AVX2 kernels), with tfjs BatchMatMul /
// _FusedMatMul semantics: a [batchA, M, K] (or [batchA, K, M] with transposeA), b [batchB, K, N] (or [batchB, N, K]),
// one of the batch counts may be 1 (broadcast), out [max(batchA, batchB), M, N]; optional bias [N] added to every row
// and an activation, as _FusedMatMul does.
//
// dims (Int32Array): [batchA, batchB, M, N, K, transposeA, transposeB]
#include <algorithm>

#include "common.h"

namespace dk {

// gemm(heap, a, b, out, dims, bias | -1, activation, alpha)
Napi::Value Gemm(const Napi::CallbackInfo& info) {
  auto heap = info[0].As<Napi::ArrayBuffer>();
  const int32_t* d = dimsOf(info[4], 7, "gemm");
  const float* a = heapF32(heap, info[1]);
  const float* b = heapF32(heap, info[2]);
  float* out = heapF32(heap, info[3]);
  const float* bias = heapF32OrNull(heap, info[5]);
  const int32_t act = info[6].As<Napi::Number>().Int32Value();
  const float alpha = info[7].As<Napi::Number>().FloatValue();
  const int64_t batchA = d[0], batchB = d[1], m = d[2], n = d[3], k = d[4];
  const bool ta = d[5] != 0, tb = d[6] != 0;
  const int64_t batch = std::max(batchA, batchB);
  const int64_t lda = ta ? m : k, ldb = tb ? k : n;
  for (int64_t i = 0; i < batch; i++) {
    const float* ai = a + (batchA == 1 ? 0 : i * m * k);
    const float* bi = b + (batchB == 1 ? 0 : i * k * n);
    float* ci = out + i * m * n;
    if (k == 0) {
      std::fill(ci, ci + m * n, 0.0f);
    } else {
      const dnnl_status_t st = dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, 1.0f, ai, lda, bi, ldb, 0.0f, ci, n);
      if (st != dnnl_success) throw Napi::Error::New(info.Env(), "gemm: dnnl_sgemm failed with status " + std::to_string(st));
    }
    if (bias) {
      for (int64_t r = 0; r < m; r++) {
        float* row = ci + r * n;
        for (int64_t j = 0; j < n; j++) row[j] += bias[j];
      }
    }
    if (act != kLinear) activate(ci, static_cast<size_t>(m * n), act, alpha);
  }
  ctx().impls["matmul"] = "dnnl_sgemm";
  return info.Env().Undefined();
}

}  // namespace dk
