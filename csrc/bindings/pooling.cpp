// Bindings for pooling and nearest-neighbour upsampling (fusednn/pooling.h).
// The caller (python/fusednn/ops/pooling.py) computes the output shape and the
// padding and allocates the outputs; this layer re-checks the geometry so that
// a direct call cannot read or write out of bounds: every window must hold at
// least one input element, and output and input must agree on N and C.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/array.h>

#include <array>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

#include "bindings.h"
#include "fusednn/pooling.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace fusednn::bindings {

namespace {

template <typename T, typename Device>
using Image = nb::ndarray<T, nb::ndim<4>, nb::c_contig, Device>;

// (height, width) pairs: window size, strides, padding (top, left), upsampling factors.
using Pair = std::array<std::int64_t, 2>;

// Window sizes and strides beyond this are rejected so index arithmetic cannot overflow.
constexpr std::int64_t kMaxExtent = std::numeric_limits<std::int32_t>::max();

template <typename Array>
std::int64_t dim(const Array& a, int axis) {
  return static_cast<std::int64_t>(a.shape(axis));
}

// Geometry of a pooling call between `input` (x or dx, (N, H, W, C)) and
// `output` (y or dy, (N, OH, OW, C)), validated.
template <typename In, typename Out>
Pool2dGeometry pool_geometry(const char* op, const In& input, const Out& output, Pair kernel,
                             Pair strides, Pair padding) {
  Pool2dGeometry g{dim(input, 0),  dim(input, 1),  dim(input, 2),  dim(input, 3),
                   dim(output, 1), dim(output, 2), kernel[0],      kernel[1],
                   strides[0],     strides[1],     padding[0],     padding[1]};
  if (dim(output, 0) != g.N || dim(output, 3) != g.C) {
    fail(op, "input " + shape_str(input) + " and output " + shape_str(output) +
                 " must agree on batch N and channels C");
  }
  for (int axis = 0; axis < 2; ++axis) {
    const char* name = axis == 0 ? "height" : "width";
    const std::int64_t size = axis == 0 ? g.H : g.W, out = axis == 0 ? g.OH : g.OW;
    if (kernel[axis] < 1 || kernel[axis] > kMaxExtent || strides[axis] < 1 ||
        strides[axis] > kMaxExtent) {
      fail(op, std::string("window size and stride must be in [1, 2^31) on the ") + name +
                   ", got window " + std::to_string(kernel[axis]) + ", stride " +
                   std::to_string(strides[axis]));
    }
    if (padding[axis] < 0 || padding[axis] >= kernel[axis]) {
      fail(op, std::string("padding before the first ") + (axis == 0 ? "row" : "column") +
                   " must be in [0, window size " + std::to_string(kernel[axis]) + "), got " +
                   std::to_string(padding[axis]));
    }
    // The last window must start inside the input: (out - 1) * stride - pad < size.
    if (size < 1 || out < 1 || out - 1 > (size - 1 + padding[axis]) / strides[axis]) {
      fail(op, std::string("input ") + shape_str(input) + " and output " + shape_str(output) +
                   " do not fit the window geometry on the " + name + " (window " +
                   std::to_string(kernel[axis]) + ", stride " + std::to_string(strides[axis]) +
                   ", padding " + std::to_string(padding[axis]) +
                   "): some window would hold no input element");
    }
  }
  return g;
}

template <typename Index>
void check_argmax(const char* op, const Pool2dGeometry& g, std::size_t rows, std::size_t h,
                  std::size_t w, std::size_t c) {
  if (static_cast<std::int64_t>(rows) != g.N || static_cast<std::int64_t>(h) != g.OH ||
      static_cast<std::int64_t>(w) != g.OW || static_cast<std::int64_t>(c) != g.C) {
    fail(op, "argmax must have the output's shape (N, OH, OW, C)");
  }
  if (g.H * g.W > static_cast<std::int64_t>(std::numeric_limits<Index>::max())) {
    fail(op, "argmax dtype is too narrow for H * W = " + std::to_string(g.H * g.W) +
                 " positions; use int64");
  }
}

void check_upsample(const char* op, std::int64_t N, std::int64_t H, std::int64_t W,
                    std::int64_t C, std::int64_t ON, std::int64_t OH, std::int64_t OW,
                    std::int64_t OC, Pair size) {
  if (size[0] < 1 || size[1] < 1 || size[0] > kMaxExtent || size[1] > kMaxExtent) {
    fail(op, "upsampling factors must be in [1, 2^31), got (" + std::to_string(size[0]) + ", " +
                 std::to_string(size[1]) + ")");
  }
  if (ON != N || OC != C || OH != H * size[0] || OW != W * size[1]) {
    fail(op, "the upsampled array must have shape (N, H * " + std::to_string(size[0]) +
                 ", W * " + std::to_string(size[1]) + ", C) = (" + std::to_string(N) + ", " +
                 std::to_string(H * size[0]) + ", " + std::to_string(W * size[1]) + ", " +
                 std::to_string(C) + "), got (" + std::to_string(ON) + ", " +
                 std::to_string(OH) + ", " + std::to_string(OW) + ", " + std::to_string(OC) + ")");
  }
}

// ----- CPU ------------------------------------------------------------------
using Cpu = nb::device::cpu;

template <typename T, typename Index>
void max_forward_cpu(Image<const T, Cpu> x, Image<T, Cpu> y, Image<Index, Cpu> argmax,
                     Pair kernel, Pair strides, Pair padding) {
  const char* op = "max_pool2d_forward";
  const Pool2dGeometry g = pool_geometry(op, x, y, kernel, strides, padding);
  check_argmax<Index>(op, g, argmax.shape(0), argmax.shape(1), argmax.shape(2), argmax.shape(3));
  nb::gil_scoped_release release;
  cpu::max_pool2d_forward<T, Index>(x.data(), y.data(), argmax.data(), g);
}

template <typename T, typename Index>
void max_backward_cpu(Image<const T, Cpu> dy, Image<const Index, Cpu> argmax, Image<T, Cpu> dx,
                      Pair kernel, Pair strides, Pair padding) {
  const char* op = "max_pool2d_backward";
  const Pool2dGeometry g = pool_geometry(op, dx, dy, kernel, strides, padding);
  check_argmax<Index>(op, g, argmax.shape(0), argmax.shape(1), argmax.shape(2), argmax.shape(3));
  nb::gil_scoped_release release;
  cpu::max_pool2d_backward<T, Index>(dy.data(), argmax.data(), dx.data(), g);
}

template <typename T>
void avg_forward_cpu(Image<const T, Cpu> x, Image<T, Cpu> y, Pair kernel, Pair strides,
                     Pair padding) {
  const Pool2dGeometry g = pool_geometry("avg_pool2d_forward", x, y, kernel, strides, padding);
  nb::gil_scoped_release release;
  cpu::avg_pool2d_forward<T>(x.data(), y.data(), g);
}

template <typename T>
void avg_backward_cpu(Image<const T, Cpu> dy, Image<T, Cpu> dx, Pair kernel, Pair strides,
                      Pair padding) {
  const Pool2dGeometry g = pool_geometry("avg_pool2d_backward", dx, dy, kernel, strides, padding);
  nb::gil_scoped_release release;
  cpu::avg_pool2d_backward<T>(dy.data(), dx.data(), g);
}

template <typename T>
void upsample_forward_cpu(Image<const T, Cpu> x, Image<T, Cpu> y, Pair size) {
  check_upsample("upsample_nearest2d_forward", dim(x, 0), dim(x, 1), dim(x, 2), dim(x, 3),
                 dim(y, 0), dim(y, 1), dim(y, 2), dim(y, 3), size);
  nb::gil_scoped_release release;
  cpu::upsample_nearest2d_forward<T>(x.data(), y.data(), dim(x, 0), dim(x, 1), dim(x, 2),
                                     dim(x, 3), size[0], size[1]);
}

template <typename T>
void upsample_backward_cpu(Image<const T, Cpu> dy, Image<T, Cpu> dx, Pair size) {
  check_upsample("upsample_nearest2d_backward", dim(dx, 0), dim(dx, 1), dim(dx, 2), dim(dx, 3),
                 dim(dy, 0), dim(dy, 1), dim(dy, 2), dim(dy, 3), size);
  nb::gil_scoped_release release;
  cpu::upsample_nearest2d_backward<T>(dy.data(), dx.data(), dim(dx, 0), dim(dx, 1), dim(dx, 2),
                                      dim(dx, 3), size[0], size[1]);
}

// ----- CUDA -----------------------------------------------------------------
using Gpu = nb::device::cuda;

template <typename T, typename Index>
void max_forward_cuda(Image<const T, Gpu> x, Image<T, Gpu> y, Image<Index, Gpu> argmax,
                      Pair kernel, Pair strides, Pair padding, std::uintptr_t stream) {
  const char* op = "max_pool2d_forward";
  const Pool2dGeometry g = pool_geometry(op, x, y, kernel, strides, padding);
  check_argmax<Index>(op, g, argmax.shape(0), argmax.shape(1), argmax.shape(2), argmax.shape(3));
#if FUSEDNN_WITH_CUDA
  nb::gil_scoped_release release;
  cuda::max_pool2d_forward<T, Index>(x.data(), y.data(), argmax.data(), g, stream);
#else
  no_cuda(op);
#endif
}

template <typename T, typename Index>
void max_backward_cuda(Image<const T, Gpu> dy, Image<const Index, Gpu> argmax, Image<T, Gpu> dx,
                       Pair kernel, Pair strides, Pair padding, std::uintptr_t stream) {
  const char* op = "max_pool2d_backward";
  const Pool2dGeometry g = pool_geometry(op, dx, dy, kernel, strides, padding);
  check_argmax<Index>(op, g, argmax.shape(0), argmax.shape(1), argmax.shape(2), argmax.shape(3));
#if FUSEDNN_WITH_CUDA
  nb::gil_scoped_release release;
  cuda::max_pool2d_backward<T, Index>(dy.data(), argmax.data(), dx.data(), g, stream);
#else
  no_cuda(op);
#endif
}

template <typename T>
void avg_forward_cuda(Image<const T, Gpu> x, Image<T, Gpu> y, Pair kernel, Pair strides,
                      Pair padding, std::uintptr_t stream) {
  const char* op = "avg_pool2d_forward";
  [[maybe_unused]] const Pool2dGeometry g = pool_geometry(op, x, y, kernel, strides, padding);
#if FUSEDNN_WITH_CUDA
  nb::gil_scoped_release release;
  cuda::avg_pool2d_forward<T>(x.data(), y.data(), g, stream);
#else
  no_cuda(op);
#endif
}

template <typename T>
void avg_backward_cuda(Image<const T, Gpu> dy, Image<T, Gpu> dx, Pair kernel, Pair strides,
                       Pair padding, std::uintptr_t stream) {
  const char* op = "avg_pool2d_backward";
  [[maybe_unused]] const Pool2dGeometry g = pool_geometry(op, dx, dy, kernel, strides, padding);
#if FUSEDNN_WITH_CUDA
  nb::gil_scoped_release release;
  cuda::avg_pool2d_backward<T>(dy.data(), dx.data(), g, stream);
#else
  no_cuda(op);
#endif
}

template <typename T>
void upsample_forward_cuda(Image<const T, Gpu> x, Image<T, Gpu> y, Pair size,
                           std::uintptr_t stream) {
  const char* op = "upsample_nearest2d_forward";
  check_upsample(op, dim(x, 0), dim(x, 1), dim(x, 2), dim(x, 3), dim(y, 0), dim(y, 1), dim(y, 2),
                 dim(y, 3), size);
#if FUSEDNN_WITH_CUDA
  nb::gil_scoped_release release;
  cuda::upsample_nearest2d_forward<T>(x.data(), y.data(), dim(x, 0), dim(x, 1), dim(x, 2),
                                      dim(x, 3), size[0], size[1], stream);
#else
  no_cuda(op);
#endif
}

template <typename T>
void upsample_backward_cuda(Image<const T, Gpu> dy, Image<T, Gpu> dx, Pair size,
                            std::uintptr_t stream) {
  const char* op = "upsample_nearest2d_backward";
  check_upsample(op, dim(dx, 0), dim(dx, 1), dim(dx, 2), dim(dx, 3), dim(dy, 0), dim(dy, 1),
                 dim(dy, 2), dim(dy, 3), size);
#if FUSEDNN_WITH_CUDA
  nb::gil_scoped_release release;
  cuda::upsample_nearest2d_backward<T>(dy.data(), dx.data(), dim(dx, 0), dim(dx, 1), dim(dx, 2),
                                       dim(dx, 3), size[0], size[1], stream);
#else
  no_cuda(op);
#endif
}

// Registers one function for every (dtype[, argmax dtype]) combination; nanobind
// picks the overload whose array dtypes match (no conversion).
template <typename T>
void bind_dtype(nb::module_& m) {
  const char* max_fwd_doc =
      "Max pooling, NHWC: writes y (N, OH, OW, C) and argmax (N, OH, OW, C) = h * W + w.";
  const char* max_bwd_doc = "Max pooling backward: writes dx (N, H, W, C) from dy and argmax.";
  const char* avg_fwd_doc = "Average pooling, NHWC (mean over the input elements in each window).";
  const char* avg_bwd_doc = "Average pooling backward: writes dx (N, H, W, C) from dy.";
  const char* up_fwd_doc = "Nearest-neighbour upsampling by integer factors (SH, SW), NHWC.";
  const char* up_bwd_doc = "Nearest-neighbour upsampling backward: block sums of dy.";
  m.def("max_pool2d_forward_cpu", &max_forward_cpu<T, std::int32_t>, "x"_a.noconvert(),
        "y"_a.noconvert(), "argmax"_a.noconvert(), "kernel"_a, "strides"_a, "padding"_a,
        max_fwd_doc);
  m.def("max_pool2d_forward_cpu", &max_forward_cpu<T, std::int64_t>, "x"_a.noconvert(),
        "y"_a.noconvert(), "argmax"_a.noconvert(), "kernel"_a, "strides"_a, "padding"_a,
        max_fwd_doc);
  m.def("max_pool2d_backward_cpu", &max_backward_cpu<T, std::int32_t>, "dy"_a.noconvert(),
        "argmax"_a.noconvert(), "dx"_a.noconvert(), "kernel"_a, "strides"_a, "padding"_a,
        max_bwd_doc);
  m.def("max_pool2d_backward_cpu", &max_backward_cpu<T, std::int64_t>, "dy"_a.noconvert(),
        "argmax"_a.noconvert(), "dx"_a.noconvert(), "kernel"_a, "strides"_a, "padding"_a,
        max_bwd_doc);
  m.def("avg_pool2d_forward_cpu", &avg_forward_cpu<T>, "x"_a.noconvert(), "y"_a.noconvert(),
        "kernel"_a, "strides"_a, "padding"_a, avg_fwd_doc);
  m.def("avg_pool2d_backward_cpu", &avg_backward_cpu<T>, "dy"_a.noconvert(), "dx"_a.noconvert(),
        "kernel"_a, "strides"_a, "padding"_a, avg_bwd_doc);
  m.def("upsample_nearest2d_forward_cpu", &upsample_forward_cpu<T>, "x"_a.noconvert(),
        "y"_a.noconvert(), "size"_a, up_fwd_doc);
  m.def("upsample_nearest2d_backward_cpu", &upsample_backward_cpu<T>, "dy"_a.noconvert(),
        "dx"_a.noconvert(), "size"_a, up_bwd_doc);

  m.def("max_pool2d_forward_cuda", &max_forward_cuda<T, std::int32_t>, "x"_a.noconvert(),
        "y"_a.noconvert(), "argmax"_a.noconvert(), "kernel"_a, "strides"_a, "padding"_a,
        "stream"_a, max_fwd_doc);
  m.def("max_pool2d_forward_cuda", &max_forward_cuda<T, std::int64_t>, "x"_a.noconvert(),
        "y"_a.noconvert(), "argmax"_a.noconvert(), "kernel"_a, "strides"_a, "padding"_a,
        "stream"_a, max_fwd_doc);
  m.def("max_pool2d_backward_cuda", &max_backward_cuda<T, std::int32_t>, "dy"_a.noconvert(),
        "argmax"_a.noconvert(), "dx"_a.noconvert(), "kernel"_a, "strides"_a, "padding"_a,
        "stream"_a, max_bwd_doc);
  m.def("max_pool2d_backward_cuda", &max_backward_cuda<T, std::int64_t>, "dy"_a.noconvert(),
        "argmax"_a.noconvert(), "dx"_a.noconvert(), "kernel"_a, "strides"_a, "padding"_a,
        "stream"_a, max_bwd_doc);
  m.def("avg_pool2d_forward_cuda", &avg_forward_cuda<T>, "x"_a.noconvert(), "y"_a.noconvert(),
        "kernel"_a, "strides"_a, "padding"_a, "stream"_a, avg_fwd_doc);
  m.def("avg_pool2d_backward_cuda", &avg_backward_cuda<T>, "dy"_a.noconvert(),
        "dx"_a.noconvert(), "kernel"_a, "strides"_a, "padding"_a, "stream"_a, avg_bwd_doc);
  m.def("upsample_nearest2d_forward_cuda", &upsample_forward_cuda<T>, "x"_a.noconvert(),
        "y"_a.noconvert(), "size"_a, "stream"_a, up_fwd_doc);
  m.def("upsample_nearest2d_backward_cuda", &upsample_backward_cuda<T>, "dy"_a.noconvert(),
        "dx"_a.noconvert(), "size"_a, "stream"_a, up_bwd_doc);
}

}  // namespace

void bind_pooling(nb::module_& m) {
  bind_dtype<float>(m);
  bind_dtype<double>(m);
}

}  // namespace fusednn::bindings
