// 2-D convolutions on oneDNN, in tfjs's layouts: activations NHWC, filters HWIO [kh, kw, ci, co].
//
// Activations stay NHWC (the wasm heap's layout, no reorder of the large tensors); the filter is given to oneDNN as
// `format_tag::any`, so it picks its blocked layout and its fastest implementation (brgconv / jit avx512 rather than
// gemm on plain layouts, ~2–4× faster measured, ../shared/compute-stack.md §6). The small filter is reordered into
// that layout on every call (forward, backward data) and the filter gradient out of it (backward weights).
//
// dims (Int32Array, shared with src/backend/native-kernels.ts `convDims`):
//   [N, H, W, Ci, Co, KH, KW, Ho, Wo, strideH, strideW, padTop, padBottom, padLeft, padRight, dilationH, dilationW]
// padBottom/padRight may be negative ('valid' padding whose last rows/columns are not covered by any window):
// oneDNN accepts that, as the consistency rule Ho = (H + padT + padB − ((KH−1)·dilH + 1)) / sH + 1 shows.
#include "common.h"

namespace dk {
namespace {

using namespace dnnl;
using tag = memory::format_tag;
using dt = memory::data_type;

struct Geometry {
  memory::dim n, h, w, ci, co, kh, kw, ho, wo;
  memory::dims strides, dilation, padL, padR;
  explicit Geometry(const int32_t* d)
      : n(d[0]), h(d[1]), w(d[2]), ci(d[3]), co(d[4]), kh(d[5]), kw(d[6]), ho(d[7]), wo(d[8]),
        strides{d[9], d[10]}, dilation{d[15] - 1, d[16] - 1}, padL{d[11], d[13]}, padR{d[12], d[14]} {}
  memory::desc src() const { return {{n, ci, h, w}, dt::f32, tag::nhwc}; }
  memory::desc dst() const { return {{n, co, ho, wo}, dt::f32, tag::nhwc}; }
  memory::desc weightsUser() const { return {{co, ci, kh, kw}, dt::f32, tag::hwio}; }
  memory::desc weightsAny() const { return {{co, ci, kh, kw}, dt::f32, tag::any}; }
  memory::desc bias() const { return {{co}, dt::f32, tag::x}; }
};

constexpr size_t kDims = 17;

convolution_forward::primitive_desc forwardPd(const Geometry& g, bool withBias, const primitive_attr& attr) {
  auto& c = ctx();
  auto d = withBias ? convolution_forward::desc(prop_kind::forward_training, algorithm::convolution_direct, g.src(),
                                                g.weightsAny(), g.bias(), g.dst(), g.strides, g.dilation, g.padL, g.padR)
                    : convolution_forward::desc(prop_kind::forward_training, algorithm::convolution_direct, g.src(),
                                                g.weightsAny(), g.dst(), g.strides, g.dilation, g.padL, g.padR);
  return convolution_forward::primitive_desc(d, attr, c.eng);
}

/** A user-layout buffer reordered into (or out of) the primitive's own layout, when they differ. */
struct Staged {
  memory user, internal;
  reorder move;
  bool needed = false;
  Staged(const memory::desc& userMd, const memory::desc& internalMd, bool toInternal) {
    auto& c = ctx();
    user = memory(userMd, c.eng, DNNL_MEMORY_NONE);
    needed = userMd != internalMd;
    if (needed) {
      internal = memory(internalMd, c.eng);
      move = toInternal ? reorder(user, internal) : reorder(internal, user);
    }
  }
  memory& forPrimitive() { return needed ? internal : user; }
};

struct Forward {
  convolution_forward::primitive_desc pd;
  convolution_forward prim;
  memory src, dst, bias;
  Staged weights;
  Forward(const Geometry& g, bool withBias, int32_t act, float alpha)
      : pd(forwardPd(g, withBias, [&] {
          primitive_attr a;
          a.set_post_ops(activationPostOps(act, alpha));
          return a;
        }())),
        prim(pd),
        src(g.src(), ctx().eng, DNNL_MEMORY_NONE),
        dst(g.dst(), ctx().eng, DNNL_MEMORY_NONE),
        bias(g.bias(), ctx().eng, DNNL_MEMORY_NONE),
        weights(g.weightsUser(), pd.weights_desc(), true) {}
};

struct BackwardData {
  convolution_backward_data::primitive_desc pd;
  convolution_backward_data prim;
  memory diffSrc, diffDst;
  Staged weights;
  explicit BackwardData(const Geometry& g)
      : pd(convolution_backward_data::desc(algorithm::convolution_direct, g.src(), g.weightsAny(), g.dst(), g.strides,
                                           g.dilation, g.padL, g.padR),
           ctx().eng, forwardPd(g, false, primitive_attr())),
        prim(pd),
        diffSrc(g.src(), ctx().eng, DNNL_MEMORY_NONE),
        diffDst(g.dst(), ctx().eng, DNNL_MEMORY_NONE),
        weights(g.weightsUser(), pd.weights_desc(), true) {}
};

struct BackwardWeights {
  convolution_backward_weights::primitive_desc pd;
  convolution_backward_weights prim;
  memory src, diffDst;
  Staged diffWeights;
  explicit BackwardWeights(const Geometry& g)
      : pd(convolution_backward_weights::desc(algorithm::convolution_direct, g.src(), g.weightsAny(), g.dst(),
                                              g.strides, g.dilation, g.padL, g.padR),
           ctx().eng, forwardPd(g, false, primitive_attr())),
        prim(pd),
        src(g.src(), ctx().eng, DNNL_MEMORY_NONE),
        diffDst(g.dst(), ctx().eng, DNNL_MEMORY_NONE),
        diffWeights(g.weightsUser(), pd.diff_weights_desc(), false) {}
};

}  // namespace

// convForward(heap, x, filter, bias | -1, y, dims, activation, alpha)
Napi::Value ConvForward(const Napi::CallbackInfo& info) {
  auto heap = info[0].As<Napi::ArrayBuffer>();
  const int32_t* d = dimsOf(info[5], kDims, "convForward");
  const int32_t act = info[6].As<Napi::Number>().Int32Value();
  const float alpha = info[7].As<Napi::Number>().FloatValue();
  float* bias = heapF32OrNull(heap, info[3]);
  const Geometry g(d);
  auto& f = cached<Forward>(keyOf(bias ? "convF+b" : "convF", d, kDims, act * 1e3 + alpha),
                            [&] { return Forward(g, bias != nullptr, act, alpha); });
  auto& c = ctx();
  c.impls["conv_fwd"] = f.pd.impl_info_str();
  f.src.set_data_handle(heapF32(heap, info[1]));
  f.weights.user.set_data_handle(heapF32(heap, info[2]));
  f.dst.set_data_handle(heapF32(heap, info[4]));
  if (f.weights.needed) f.weights.move.execute(c.strm, f.weights.user, f.weights.internal);
  std::unordered_map<int, memory> args{
      {DNNL_ARG_SRC, f.src}, {DNNL_ARG_WEIGHTS, f.weights.forPrimitive()}, {DNNL_ARG_DST, f.dst}};
  if (bias) {
    f.bias.set_data_handle(bias);
    args.emplace(DNNL_ARG_BIAS, f.bias);
  }
  f.prim.execute(c.strm, args);
  c.strm.wait();
  return info.Env().Undefined();
}

// convBackwardData(heap, dy, filter, dx, dims)
Napi::Value ConvBackwardData(const Napi::CallbackInfo& info) {
  auto heap = info[0].As<Napi::ArrayBuffer>();
  const int32_t* d = dimsOf(info[4], kDims, "convBackwardData");
  const Geometry g(d);
  auto& b = cached<BackwardData>(keyOf("convBD", d, kDims), [&] { return BackwardData(g); });
  auto& c = ctx();
  c.impls["conv_bwd_data"] = b.pd.impl_info_str();
  b.diffDst.set_data_handle(heapF32(heap, info[1]));
  b.weights.user.set_data_handle(heapF32(heap, info[2]));
  b.diffSrc.set_data_handle(heapF32(heap, info[3]));
  if (b.weights.needed) b.weights.move.execute(c.strm, b.weights.user, b.weights.internal);
  b.prim.execute(c.strm, {{DNNL_ARG_DIFF_DST, b.diffDst},
                          {DNNL_ARG_WEIGHTS, b.weights.forPrimitive()},
                          {DNNL_ARG_DIFF_SRC, b.diffSrc}});
  c.strm.wait();
  return info.Env().Undefined();
}

// convBackwardWeights(heap, x, dy, dw, dims)
Napi::Value ConvBackwardWeights(const Napi::CallbackInfo& info) {
  auto heap = info[0].As<Napi::ArrayBuffer>();
  const int32_t* d = dimsOf(info[4], kDims, "convBackwardWeights");
  const Geometry g(d);
  auto& b = cached<BackwardWeights>(keyOf("convBW", d, kDims), [&] { return BackwardWeights(g); });
  auto& c = ctx();
  c.impls["conv_bwd_weights"] = b.pd.impl_info_str();
  b.src.set_data_handle(heapF32(heap, info[1]));
  b.diffDst.set_data_handle(heapF32(heap, info[2]));
  b.diffWeights.user.set_data_handle(heapF32(heap, info[3]));
  b.prim.execute(c.strm, {{DNNL_ARG_SRC, b.src},
                          {DNNL_ARG_DIFF_DST, b.diffDst},
                          {DNNL_ARG_DIFF_WEIGHTS, b.diffWeights.forPrimitive()}});
  if (b.diffWeights.needed) b.diffWeights.move.execute(c.strm, b.diffWeights.internal, b.diffWeights.user);
  c.strm.wait();
  return info.Env().Undefined();
}

}  // namespace dk
