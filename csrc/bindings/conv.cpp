// Bindings for conv2d (fusednn/conv.h). The caller (python/fusednn/ops/conv.py)
// computes the geometry, validates the arrays and allocates the outputs; this
// layer re-checks every array against the geometry so that a direct call
// cannot read or write out of bounds.
//
// geometry: (N, H, W, C, OH, OW, F, KH, KW, stride_h, stride_w, dilation_h,
// dilation_w, pad_top, pad_left). Optional arrays are None when not needed or
// not wanted. activation: "linear" or "relu" (the fused epilogue).
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/array.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>

#include <array>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "bindings.h"
#include "fusednn/conv.h"
#include "fusednn/conv_pool.h"
#include "fusednn/determinism.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace fusednn::bindings {

namespace {

using Geometry = std::array<std::int64_t, 15>;

template <typename T, typename Device, std::size_t Ndim>
using Array = nb::ndarray<T, nb::ndim<Ndim>, nb::c_contig, Device>;

template <typename T, typename Device, std::size_t Ndim>
using Maybe = std::optional<Array<T, Device, Ndim>>;

Conv2dShape shape_of(const char* op, const Geometry& g) {
  const Conv2dShape s{g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7],
                      g[8], g[9], g[10], g[11], g[12], g[13], g[14]};
  const bool ok = s.N >= 0 && s.H >= 0 && s.W >= 0 && s.C >= 1 && s.OH >= 0 && s.OW >= 0 &&
                  s.F >= 1 && s.KH >= 1 && s.KW >= 1 && s.stride_h >= 1 && s.stride_w >= 1 &&
                  s.dilation_h >= 1 && s.dilation_w >= 1 && s.pad_top >= 0 && s.pad_left >= 0;
  if (!ok) {
    std::string text;
    for (std::size_t i = 0; i < g.size(); ++i) text += (i ? ", " : "") + std::to_string(g[i]);
    throw nb::value_error((std::string(op) + ": invalid geometry (" + text +
                           "); expected sizes >= 0, C, F, KH, KW, strides and dilations >= 1, "
                           "pads >= 0")
                              .c_str());
  }
  return s;
}

std::array<std::int64_t, 4> input_shape(const Conv2dShape& s) { return {s.N, s.H, s.W, s.C}; }
std::array<std::int64_t, 4> output_shape(const Conv2dShape& s) { return {s.N, s.OH, s.OW, s.F}; }
std::array<std::int64_t, 4> kernel_shape(const Conv2dShape& s) { return {s.KH, s.KW, s.C, s.F}; }

Epilogue epilogue_of(const char* op, const std::string& activation) {
  if (activation == "linear") return Epilogue::kLinear;
  if (activation == "relu") return Epilogue::kRelu;
  throw nb::value_error((std::string(op) + ": activation must be 'linear' or 'relu', got '" +
                         activation + "'")
                            .c_str());
}

// ----- checks shared by the CPU and CUDA entry points ------------------------

template <typename T, typename D>
void check_forward(const char* op, const Conv2dShape& s, const Array<const T, D, 4>& x,
                   const Array<const T, D, 4>& w, const Maybe<const T, D, 1>& bias,
                   const Array<T, D, 4>& y) {
  expect_shape(op, "x", x, input_shape(s));
  expect_shape(op, "kernel", w, kernel_shape(s));
  if (bias) expect_shape(op, "bias", *bias, std::array<std::int64_t, 1>{s.F});
  expect_shape(op, "y", y, output_shape(s));
}

template <typename T, typename D>
void check_backward(const char* op, const Conv2dShape& s, Epilogue e,
                    const Maybe<const T, D, 4>& x, const Maybe<const T, D, 4>& y,
                    const Array<const T, D, 4>& dy, const Maybe<const T, D, 4>& w,
                    const Maybe<T, D, 4>& dx, const Maybe<T, D, 4>& dw,
                    const Maybe<T, D, 1>& db) {
  expect_shape(op, "dy", dy, output_shape(s));
  if (x) expect_shape(op, "x", *x, input_shape(s));
  if (y) expect_shape(op, "y", *y, output_shape(s));
  if (w) expect_shape(op, "kernel", *w, kernel_shape(s));
  if (dx) expect_shape(op, "dx", *dx, input_shape(s));
  if (dw) expect_shape(op, "dkernel", *dw, kernel_shape(s));
  if (db) expect_shape(op, "dbias", *db, std::array<std::int64_t, 1>{s.F});
  if (dw && !x) throw nb::value_error((std::string(op) + ": dkernel needs x").c_str());
  if (dx && !w) throw nb::value_error((std::string(op) + ": dx needs the kernel").c_str());
  if (e != Epilogue::kLinear && !y) {
    throw nb::value_error((std::string(op) + ": a fused activation needs the forward output y")
                              .c_str());
  }
}

template <typename T, typename D>
void check_backward_data(const char* op, const Conv2dShape& s, const Array<const T, D, 4>& g,
                         const Array<const T, D, 4>& w, const Maybe<const T, D, 1>& bias,
                         const Array<T, D, 4>& out) {
  expect_shape(op, "input", g, output_shape(s));
  expect_shape(op, "kernel", w, kernel_shape(s));
  if (bias) expect_shape(op, "bias", *bias, std::array<std::int64_t, 1>{s.C});
  expect_shape(op, "output", out, input_shape(s));
}

// ----- CPU -------------------------------------------------------------------

using Cpu = nb::device::cpu;

template <typename T>
void forward_cpu(Array<const T, Cpu, 4> x, Array<const T, Cpu, 4> w, Maybe<const T, Cpu, 1> bias,
                 Array<T, Cpu, 4> y, const Geometry& geometry, const std::string& activation) {
  const char* op = "conv2d_forward";
  const Conv2dShape s = shape_of(op, geometry);
  check_forward(op, s, x, w, bias, y);
  const Epilogue e = epilogue_of(op, activation);
  nb::gil_scoped_release release;
  if (e == Epilogue::kRelu) {
    cpu::conv2d_forward<T, Epilogue::kRelu>(s, x.data(), w.data(), data_or_null(bias), y.data());
  } else {
    cpu::conv2d_forward<T, Epilogue::kLinear>(s, x.data(), w.data(), data_or_null(bias), y.data());
  }
}

template <typename T>
void backward_cpu(Maybe<const T, Cpu, 4> x, Maybe<const T, Cpu, 4> y, Array<const T, Cpu, 4> dy,
                  Maybe<const T, Cpu, 4> w, Maybe<T, Cpu, 4> dx, Maybe<T, Cpu, 4> dw,
                  Maybe<T, Cpu, 1> db, const Geometry& geometry, const std::string& activation) {
  const char* op = "conv2d_backward";
  const Conv2dShape s = shape_of(op, geometry);
  const Epilogue e = epilogue_of(op, activation);
  check_backward(op, s, e, x, y, dy, w, dx, dw, db);
  nb::gil_scoped_release release;
  if (e == Epilogue::kRelu) {
    cpu::conv2d_backward<T, Epilogue::kRelu>(s, data_or_null(x), data_or_null(y), dy.data(),
                                             data_or_null(w), data_or_null(dx), data_or_null(dw),
                                             data_or_null(db));
  } else {
    cpu::conv2d_backward<T, Epilogue::kLinear>(s, data_or_null(x), data_or_null(y), dy.data(),
                                               data_or_null(w), data_or_null(dx), data_or_null(dw),
                                               data_or_null(db));
  }
}

template <typename T>
void backward_data_cpu(Array<const T, Cpu, 4> g, Array<const T, Cpu, 4> w,
                       Maybe<const T, Cpu, 1> bias, Array<T, Cpu, 4> out,
                       const Geometry& geometry, const std::string& activation) {
  const char* op = "conv2d_backward_data";
  const Conv2dShape s = shape_of(op, geometry);
  check_backward_data(op, s, g, w, bias, out);
  const Epilogue e = epilogue_of(op, activation);
  nb::gil_scoped_release release;
  if (e == Epilogue::kRelu) {
    cpu::conv2d_backward_data<T, Epilogue::kRelu>(s, g.data(), w.data(), data_or_null(bias),
                                                  out.data());
  } else {
    cpu::conv2d_backward_data<T, Epilogue::kLinear>(s, g.data(), w.data(), data_or_null(bias),
                                                    out.data());
  }
}

// ----- CUDA ------------------------------------------------------------------

using Gpu = nb::device::cuda;

#if FUSEDNN_WITH_CUDA
// Calls fn(epilogue, tf32) with both as std::integral_constant, so that fn can
// pick the template instance for the runtime choice.
template <typename Fn>
void dispatch(Epilogue e, bool tf32, Fn fn) {
  using Relu = std::integral_constant<Epilogue, Epilogue::kRelu>;
  using Linear = std::integral_constant<Epilogue, Epilogue::kLinear>;
  if (e == Epilogue::kRelu) {
    tf32 ? fn(Relu{}, std::true_type{}) : fn(Relu{}, std::false_type{});
  } else {
    tf32 ? fn(Linear{}, std::true_type{}) : fn(Linear{}, std::false_type{});
  }
}
#endif

void forward_cuda(Array<const float, Gpu, 4> x, Array<const float, Gpu, 4> w,
                  Maybe<const float, Gpu, 1> bias, Array<float, Gpu, 4> y,
                  const Geometry& geometry, const std::string& activation, bool tf32,
                  std::uintptr_t stream) {
  const char* op = "conv2d_forward";
  const Conv2dShape s = shape_of(op, geometry);
  check_forward(op, s, x, w, bias, y);
  const Epilogue e = epilogue_of(op, activation);
#if FUSEDNN_WITH_CUDA
  nb::gil_scoped_release release;
  dispatch(e, tf32, [&](auto act, auto tf) {
    cuda::conv2d_forward<decltype(act)::value, decltype(tf)::value>(
        s, x.data(), w.data(), data_or_null(bias), y.data(), stream);
  });
#else
  (void)e, (void)tf32, (void)stream;
  no_cuda(op);
#endif
}

void backward_cuda(Maybe<const float, Gpu, 4> x, Maybe<const float, Gpu, 4> y,
                   Array<const float, Gpu, 4> dy, Maybe<const float, Gpu, 4> w,
                   Maybe<float, Gpu, 4> dx, Maybe<float, Gpu, 4> dw, Maybe<float, Gpu, 1> db,
                   const Geometry& geometry, const std::string& activation, bool tf32,
                   std::uintptr_t stream) {
  const char* op = "conv2d_backward";
  const Conv2dShape s = shape_of(op, geometry);
  const Epilogue e = epilogue_of(op, activation);
  check_backward(op, s, e, x, y, dy, w, dx, dw, db);
#if FUSEDNN_WITH_CUDA
  nb::gil_scoped_release release;
  dispatch(e, tf32, [&](auto act, auto tf) {
    cuda::conv2d_backward<decltype(act)::value, decltype(tf)::value>(
        s, data_or_null(x), data_or_null(y), dy.data(), data_or_null(w), data_or_null(dx),
        data_or_null(dw), data_or_null(db), stream);
  });
#else
  (void)tf32, (void)stream;
  no_cuda(op);
#endif
}

void backward_data_cuda(Array<const float, Gpu, 4> g, Array<const float, Gpu, 4> w,
                        Maybe<const float, Gpu, 1> bias, Array<float, Gpu, 4> out,
                        const Geometry& geometry, const std::string& activation, bool tf32,
                        std::uintptr_t stream) {
  const char* op = "conv2d_backward_data";
  const Conv2dShape s = shape_of(op, geometry);
  check_backward_data(op, s, g, w, bias, out);
  const Epilogue e = epilogue_of(op, activation);
#if FUSEDNN_WITH_CUDA
  nb::gil_scoped_release release;
  dispatch(e, tf32, [&](auto act, auto tf) {
    cuda::conv2d_backward_data<decltype(act)::value, decltype(tf)::value>(
        s, g.data(), w.data(), data_or_null(bias), out.data(), stream);
  });
#else
  (void)e, (void)tf32, (void)stream;
  no_cuda(op);
#endif
}

using Window = std::array<std::int64_t, 2>;

void max_pool_forward_cuda(Array<const float, Gpu, 4> x, Array<const float, Gpu, 4> w,
                           Maybe<const float, Gpu, 1> bias, Array<float, Gpu, 4> y,
                           Maybe<std::int32_t, Gpu, 4> argmax, const Geometry& geometry,
                           const Window& pool, const std::string& activation, bool tf32,
                           std::uintptr_t stream) {
  const char* op = "conv2d_max_pool2d_forward";
  const Conv2dShape s = shape_of(op, geometry);
  const Epilogue e = epilogue_of(op, activation);
  if (pool[0] < 1 || pool[1] < 1) {
    throw nb::value_error((std::string(op) + ": the pooling window must be positive, got (" +
                           std::to_string(pool[0]) + ", " + std::to_string(pool[1]) + ")")
                              .c_str());
  }
  const std::array<std::int64_t, 4> pooled{s.N, s.OH / pool[0], s.OW / pool[1], s.F};
  expect_shape(op, "x", x, input_shape(s));
  expect_shape(op, "kernel", w, kernel_shape(s));
  if (bias) expect_shape(op, "bias", *bias, std::array<std::int64_t, 1>{s.F});
  expect_shape(op, "y", y, pooled);
  if (argmax) expect_shape(op, "argmax", *argmax, pooled);
#if FUSEDNN_WITH_CUDA
  nb::gil_scoped_release release;
  dispatch(e, tf32, [&](auto act, auto tf) {
    cuda::conv2d_max_pool2d_forward<decltype(act)::value, decltype(tf)::value>(
        s, pool[0], pool[1], x.data(), w.data(), data_or_null(bias), y.data(), data_or_null(argmax),
        stream);
  });
#else
  (void)e, (void)tf32, (void)stream;
  no_cuda(op);
#endif
}

}  // namespace

void bind_conv(nb::module_& m) {
  m.def("set_deterministic", [](bool enabled) { deterministic_reductions().store(enabled); },
        "enabled"_a.noconvert(),
        "Whether the CUDA conv kernel and bias gradients sum their partial sums in a fixed "
        "order (fusednn/determinism.h).");
  m.def("get_deterministic", [] { return deterministic_reductions().load(); });
  const char* forward_doc =
      "conv2d forward on NHWC: y = act(conv(x, kernel) + bias), written into y (N, OH, OW, F).";
  const char* backward_doc =
      "conv2d backward: from dy (gated by the activation at y), writes whichever of dx, "
      "dkernel, dbias are given.";
  const char* data_doc =
      "conv2d data gradient of `input` (N, OH, OW, F), plus bias and activation, written into "
      "output (N, H, W, C): the Conv2DTranspose forward.";
  m.def("conv2d_forward_cpu", &forward_cpu<float>, "x"_a.noconvert(), "kernel"_a.noconvert(),
        "bias"_a.noconvert().none(), "y"_a.noconvert(), "geometry"_a, "activation"_a,
        forward_doc);
  m.def("conv2d_forward_cpu", &forward_cpu<double>, "x"_a.noconvert(), "kernel"_a.noconvert(),
        "bias"_a.noconvert().none(), "y"_a.noconvert(), "geometry"_a, "activation"_a,
        forward_doc);
  m.def("conv2d_backward_cpu", &backward_cpu<float>, "x"_a.noconvert().none(),
        "y"_a.noconvert().none(), "dy"_a.noconvert(), "kernel"_a.noconvert().none(),
        "dx"_a.noconvert().none(), "dkernel"_a.noconvert().none(), "dbias"_a.noconvert().none(),
        "geometry"_a, "activation"_a, backward_doc);
  m.def("conv2d_backward_cpu", &backward_cpu<double>, "x"_a.noconvert().none(),
        "y"_a.noconvert().none(), "dy"_a.noconvert(), "kernel"_a.noconvert().none(),
        "dx"_a.noconvert().none(), "dkernel"_a.noconvert().none(), "dbias"_a.noconvert().none(),
        "geometry"_a, "activation"_a, backward_doc);
  m.def("conv2d_backward_data_cpu", &backward_data_cpu<float>, "input"_a.noconvert(),
        "kernel"_a.noconvert(), "bias"_a.noconvert().none(), "output"_a.noconvert(),
        "geometry"_a, "activation"_a, data_doc);
  m.def("conv2d_backward_data_cpu", &backward_data_cpu<double>, "input"_a.noconvert(),
        "kernel"_a.noconvert(), "bias"_a.noconvert().none(), "output"_a.noconvert(),
        "geometry"_a, "activation"_a, data_doc);
  m.def("conv2d_forward_cuda", &forward_cuda, "x"_a.noconvert(), "kernel"_a.noconvert(),
        "bias"_a.noconvert().none(), "y"_a.noconvert(), "geometry"_a, "activation"_a, "tf32"_a,
        "stream"_a, forward_doc);
  m.def("conv2d_backward_cuda", &backward_cuda, "x"_a.noconvert().none(),
        "y"_a.noconvert().none(), "dy"_a.noconvert(), "kernel"_a.noconvert().none(),
        "dx"_a.noconvert().none(), "dkernel"_a.noconvert().none(), "dbias"_a.noconvert().none(),
        "geometry"_a, "activation"_a, "tf32"_a, "stream"_a, backward_doc);
  m.def("conv2d_backward_data_cuda", &backward_data_cuda, "input"_a.noconvert(),
        "kernel"_a.noconvert(), "bias"_a.noconvert().none(), "output"_a.noconvert(),
        "geometry"_a, "activation"_a, "tf32"_a, "stream"_a, data_doc);
  m.def("conv2d_max_pool2d_forward_cuda", &max_pool_forward_cuda, "x"_a.noconvert(),
        "kernel"_a.noconvert(), "bias"_a.noconvert().none(), "y"_a.noconvert(),
        "argmax"_a.noconvert().none(), "geometry"_a, "pool"_a, "activation"_a, "tf32"_a,
        "stream"_a,
        "conv2d + bias + activation + max pooling (window `pool` = strides, 'valid') in one "
        "kernel: y (N, OH // PH, OW // PW, F) and, when given, argmax (int32, oh * OW + ow of "
        "each maximum in the conv output).");
  m.attr("conv2d_max_pool2d_max_window") = kMaxFusedPoolWindow;
}

}  // namespace fusednn::bindings
