// Shared pieces of the dkfac native engine: the per-thread oneDNN context, access to the tfjs wasm heap, and the
// primitive cache.
//
// Every kernel reads its inputs from and writes its output into the wasm backend's heap in place: JavaScript passes
// the heap's ArrayBuffer (a WebAssembly.Memory buffer) and byte offsets of the tensors, which tfjs allocated. No
// tensor is copied across the boundary. The heap may be replaced when wasm memory grows, so the JavaScript side
// allocates the outputs first and passes the buffer of the moment on every call; no pointer is kept across calls.
//
// Threads: Node worker threads each load this addon and call it from their own OS thread. Everything mutable here
// is thread_local (engine, stream, cached primitives), so threads never share state; oneDNN's own global primitive
// cache is thread-safe.
#pragma once

#include <napi.h>

#include <oneapi/dnnl/dnnl.hpp>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>

namespace dk {

/** A tensor's address on the wasm heap: base of the heap buffer plus a byte offset given by JavaScript. */
inline float* heapF32(Napi::ArrayBuffer heap, const Napi::Value& offset) {
  const double off = offset.As<Napi::Number>().DoubleValue();
  return reinterpret_cast<float*>(static_cast<uint8_t*>(heap.Data()) + static_cast<size_t>(off));
}

/** An optional tensor: JavaScript passes -1 for "absent". */
inline float* heapF32OrNull(Napi::ArrayBuffer heap, const Napi::Value& offset) {
  const double off = offset.As<Napi::Number>().DoubleValue();
  if (off < 0) return nullptr;
  return reinterpret_cast<float*>(static_cast<uint8_t*>(heap.Data()) + static_cast<size_t>(off));
}

/** The Int32Array of shape parameters every kernel takes. */
inline const int32_t* dimsOf(const Napi::Value& v, size_t expected, const char* kernel) {
  auto a = v.As<Napi::Int32Array>();
  if (a.ElementLength() < expected) {
    throw Napi::Error::New(v.Env(), std::string(kernel) + ": expected " + std::to_string(expected) + " dims");
  }
  return a.Data();
}

/**
 * The size (elements) from which the addon's own memory-bound loops run on OpenMP threads. Below it a parallel region
 * costs more than it saves, and every region waits for its slowest thread: on a loaded machine, where a thread can be
 * descheduled for a whole time slice, many small regions make a step several times slower.
 */
constexpr int64_t kParallelMin = 1 << 20;

/**
 * f(i, j) for every entry of the upper triangle of a K×K matrix (j ≥ i, or j > i when `strict`), B×B tile by tile, so
 * that an entry's transpose (j, i), read or written in the same call, stays in cache: a whole column at a time would
 * touch K rows 4·K or 8·K bytes apart (one L1 set when K is a multiple of 1024).
 */
template <typename F>
inline void upperTriangleTiles(int64_t K, int64_t B, bool strict, F&& f) {
  for (int64_t i0 = 0; i0 < K; i0 += B) {
    const int64_t i1 = std::min(K, i0 + B);
    for (int64_t j0 = i0; j0 < K; j0 += B) {
      const int64_t j1 = std::min(K, j0 + B);
      for (int64_t i = i0; i < i1; i++) {
        for (int64_t j = std::max(j0, strict ? i + 1 : i); j < j1; j++) f(i, j);
      }
    }
  }
}

/** Activation codes shared with src/backend/native-kernels.ts (`ACTIVATIONS`). */
enum Activation : int32_t { kLinear = 0, kRelu = 1, kRelu6 = 2, kElu = 3, kLeakyRelu = 4, kSigmoid = 5 };

/** The oneDNN engine and stream of the calling thread, plus the primitives it has built, keyed by shape. */
struct Context {
  dnnl::engine eng{dnnl::engine::kind::cpu, 0};
  dnnl::stream strm{eng};
  std::unordered_map<std::string, std::shared_ptr<void>> cache;
  /** The implementation oneDNN chose, by kernel (the newest one built), e.g. {"conv_fwd": "brgconv:avx512_core"}. */
  std::unordered_map<std::string, std::string> impls;
};

Context& ctx();

/** The cached object of type T under `key`, built with `make()` on first use (per thread). */
template <typename T, typename F>
T& cached(const std::string& key, F&& make) {
  auto& c = ctx().cache;
  auto it = c.find(key);
  if (it == c.end()) it = c.emplace(key, std::shared_ptr<void>(new T(make()), [](void* p) { delete static_cast<T*>(p); })).first;
  return *static_cast<T*>(it->second.get());
}

/** A cache key from a kernel name and its integer parameters. */
std::string keyOf(const char* kind, const int32_t* d, size_t n, double extra = 0);

/** Apply an activation to n floats in place (the elementwise tail of the fused kernels). */
void activate(float* y, size_t n, int32_t act, float alpha);

/** oneDNN post-ops for an activation (linear: none). */
dnnl::post_ops activationPostOps(int32_t act, float alpha);

// Kernels (one file each), registered by addon.cc.
Napi::Value ConvForward(const Napi::CallbackInfo& info);
Napi::Value ConvBackwardData(const Napi::CallbackInfo& info);
Napi::Value ConvBackwardWeights(const Napi::CallbackInfo& info);
Napi::Value Gemm(const Napi::CallbackInfo& info);
Napi::Value MaxPoolGrad(const Napi::CallbackInfo& info);
Napi::Value AvgPoolGrad(const Napi::CallbackInfo& info);
Napi::Value Patches(const Napi::CallbackInfo& info);
Napi::Value PatchSums(const Napi::CallbackInfo& info);
Napi::Value BatchNormForward(const Napi::CallbackInfo& info);
Napi::Value BatchNormApply(const Napi::CallbackInfo& info);
Napi::Value BatchNormBackward(const Napi::CallbackInfo& info);
Napi::Value ReluGrad(const Napi::CallbackInfo& info);
Napi::Value Relu(const Napi::CallbackInfo& info);
Napi::Value MaxPool(const Napi::CallbackInfo& info);
Napi::Value MomentFromGram(const Napi::CallbackInfo& info);
Napi::Value AllFinite(const Napi::CallbackInfo& info);
Napi::Value EmaUpdate(const Napi::CallbackInfo& info);
Napi::Value Concat(const Napi::CallbackInfo& info);
Napi::Value Split(const Napi::CallbackInfo& info);
Napi::Value ReduceMiddle(const Napi::CallbackInfo& info);
Napi::Value BinaryOp(const Napi::CallbackInfo& info);
Napi::Value Tile(const Napi::CallbackInfo& info);

// K-FAC's float64 linear algebra on LAPACK (linalg.cc): plain Float64Arrays, not the wasm heap.
Napi::Value SpdInverseF64(const Napi::CallbackInfo& info);
Napi::Value SymEigF64(const Napi::CallbackInfo& info);
Napi::Value LinalgThreads(const Napi::CallbackInfo& info);
Napi::Value Gram(const Napi::CallbackInfo& info);
Napi::Value PatchGram(const Napi::CallbackInfo& info);
Napi::Value PatchGramPath(const Napi::CallbackInfo& info);

}  // namespace dk
