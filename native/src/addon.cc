// The dkfac native engine: module registration, the per-thread context and shared helpers.
#include <omp.h>

#include <cmath>
#include <cstdlib>
#include <sstream>

#include "common.h"

extern "C" {
char* openblas_get_config(void);
char* openblas_get_corename(void);
}

namespace dk {

Context& ctx() {
  static thread_local std::unique_ptr<Context> c;
  if (!c) c = std::make_unique<Context>();
  return *c;
}

std::string keyOf(const char* kind, const int32_t* d, size_t n, double extra) {
  std::ostringstream s;
  s << kind;
  for (size_t i = 0; i < n; i++) s << ',' << d[i];
  s << '|' << extra;
  return s.str();
}

void activate(float* y, size_t n, int32_t act, float alpha) {
  switch (act) {
    case kRelu:
      for (size_t i = 0; i < n; i++) y[i] = y[i] > 0 ? y[i] : 0;
      break;
    case kRelu6:
      for (size_t i = 0; i < n; i++) y[i] = std::min(std::max(y[i], 0.0f), 6.0f);
      break;
    case kElu:
      for (size_t i = 0; i < n; i++) y[i] = y[i] > 0 ? y[i] : std::expm1(y[i]);
      break;
    case kLeakyRelu:
      for (size_t i = 0; i < n; i++) y[i] = y[i] > 0 ? y[i] : alpha * y[i];
      break;
    case kSigmoid:
      for (size_t i = 0; i < n; i++) y[i] = 1.0f / (1.0f + std::exp(-y[i]));
      break;
    default:
      break;
  }
}

dnnl::post_ops activationPostOps(int32_t act, float alpha) {
  using dnnl::algorithm;
  dnnl::post_ops po;
  switch (act) {
    case kRelu: po.append_eltwise(1.0f, algorithm::eltwise_relu, 0.0f, 0.0f); break;
    case kRelu6: po.append_eltwise(1.0f, algorithm::eltwise_clip, 0.0f, 6.0f); break;
    case kElu: po.append_eltwise(1.0f, algorithm::eltwise_elu, 1.0f, 0.0f); break;
    case kLeakyRelu: po.append_eltwise(1.0f, algorithm::eltwise_relu, alpha, 0.0f); break;
    case kSigmoid: po.append_eltwise(1.0f, algorithm::eltwise_logistic, 0.0f, 0.0f); break;
    default: break;
  }
  return po;
}

namespace {

/** Wrap a kernel so that oneDNN's exceptions reach JavaScript as Errors naming the kernel. */
template <Napi::Value (*K)(const Napi::CallbackInfo&)>
Napi::Value guarded(const Napi::CallbackInfo& info, const char* name) {
  try {
    return K(info);
  } catch (const dnnl::error& e) {
    throw Napi::Error::New(info.Env(), std::string(name) + ": oneDNN error " + std::to_string(e.status) + ": " + e.what());
  }
}

#define DK_EXPORT(exports, name, fn)                                                                    \
  exports.Set(name, Napi::Function::New(                                                                \
                        env, [](const Napi::CallbackInfo& i) { return guarded<fn>(i, name); }, name))

const char* isaName(dnnl_cpu_isa_t isa) {
  switch (isa) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "other";
  }
}

Napi::Value Info(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto o = Napi::Object::New(env);
  const dnnl_version_t* v = dnnl_version();
  o.Set("dnnl", std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch));
  o.Set("cpuIsa", isaName(dnnl_get_effective_cpu_isa()));
  o.Set("dnnlCpuRuntime", v->cpu_runtime == DNNL_RUNTIME_OMP ? "omp" : std::to_string(v->cpu_runtime));
  o.Set("threads", omp_get_max_threads());
  o.Set("openblas", openblas_get_config());
  o.Set("openblasCore", openblas_get_corename());
  auto impls = Napi::Object::New(env);
  for (auto& [k, s] : ctx().impls) impls.Set(k, s);
  o.Set("impls", impls);
  o.Set("cachedPrimitives", static_cast<double>(ctx().cache.size()));
  return o;
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  omp_set_num_threads(std::max(1, info[0].As<Napi::Number>().Int32Value()));
  return info.Env().Undefined();
}

Napi::Value ClearCache(const Napi::CallbackInfo& info) {
  ctx().cache.clear();
  return info.Env().Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  // DKFAC_NATIVE_THREADS: OpenMP threads of this thread's kernels (default: OpenMP's, i.e. OMP_NUM_THREADS or all
  // CPUs). Several processes training side by side on a small machine should split the cores between them.
  if (const char* t = std::getenv("DKFAC_NATIVE_THREADS")) {
    const int n = std::atoi(t);
    if (n > 0) omp_set_num_threads(n);
  }
  exports.Set("info", Napi::Function::New(env, Info, "info"));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads, "setThreads"));
  exports.Set("clearCache", Napi::Function::New(env, ClearCache, "clearCache"));
  DK_EXPORT(exports, "convForward", ConvForward);
  DK_EXPORT(exports, "convBackwardData", ConvBackwardData);
  DK_EXPORT(exports, "convBackwardWeights", ConvBackwardWeights);
  DK_EXPORT(exports, "gemm", Gemm);
  DK_EXPORT(exports, "maxPoolGrad", MaxPoolGrad);
  DK_EXPORT(exports, "avgPoolGrad", AvgPoolGrad);
  DK_EXPORT(exports, "patches", Patches);
  DK_EXPORT(exports, "patchSums", PatchSums);
  DK_EXPORT(exports, "batchNormForward", BatchNormForward);
  DK_EXPORT(exports, "batchNormBackward", BatchNormBackward);
  DK_EXPORT(exports, "batchNormApply", BatchNormApply);
  DK_EXPORT(exports, "reluGrad", ReluGrad);
  DK_EXPORT(exports, "relu", Relu);
  DK_EXPORT(exports, "maxPool", MaxPool);
  DK_EXPORT(exports, "momentFromGram", MomentFromGram);
  DK_EXPORT(exports, "allFinite", AllFinite);
  DK_EXPORT(exports, "emaUpdate", EmaUpdate);
  DK_EXPORT(exports, "concat", Concat);
  DK_EXPORT(exports, "split", Split);
  DK_EXPORT(exports, "reduceMiddle", ReduceMiddle);
  DK_EXPORT(exports, "binary", BinaryOp);
  DK_EXPORT(exports, "tile", Tile);
  DK_EXPORT(exports, "spdInverseF64", SpdInverseF64);
  DK_EXPORT(exports, "symEigF64", SymEigF64);
  DK_EXPORT(exports, "linalgThreads", LinalgThreads);
  DK_EXPORT(exports, "gram", Gram);
  DK_EXPORT(exports, "patchGram", PatchGram);
  DK_EXPORT(exports, "patchGramPath", PatchGramPath);
  return exports;
}

}  // namespace
}  // namespace dk

static Napi::Object InitAll(Napi::Env env, Napi::Object exports) { return dk::Init(env, exports); }

NODE_API_MODULE(dkfac_native, InitAll)
