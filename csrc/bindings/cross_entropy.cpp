// Bindings for the fused softmax cross-entropy (fusednn/cross_entropy.h).
// The caller (python/fusednn/ops/cross_entropy.py) allocates the outputs and
// has already validated everything; this layer re-checks shapes and, on the
// CPU, the label range, so that a direct call cannot write out of bounds.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "bindings.h"
#include "fusednn/cross_entropy.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace fusednn::bindings {

namespace {

template <typename T, typename Device, std::size_t Ndim>
using Array = nb::ndarray<T, nb::ndim<Ndim>, nb::c_contig, Device>;

template <typename T, typename Device>
void check_shapes(const char* op, const Array<const T, Device, 2>& logits, std::size_t labels_rows,
                  const Array<T, Device, 1>& losses, const Array<T, Device, 2>& dlogits) {
  const std::size_t N = logits.shape(0), C = logits.shape(1);
  if (C == 0) throw nb::value_error((std::string(op) + ": logits need at least one class").c_str());
  if (labels_rows != N || losses.shape(0) != N || dlogits.shape(0) != N || dlogits.shape(1) != C) {
    throw nb::value_error((std::string(op) + ": shapes disagree: logits (" + std::to_string(N) +
                           ", " + std::to_string(C) + "), labels/targets with " +
                           std::to_string(labels_rows) + " rows, losses (" +
                           std::to_string(losses.shape(0)) + ",), dlogits (" +
                           std::to_string(dlogits.shape(0)) + ", " +
                           std::to_string(dlogits.shape(1)) + ")")
                              .c_str());
  }
}

template <typename T>
void sparse_cpu(Array<const T, nb::device::cpu, 2> logits,
                Array<const std::int64_t, nb::device::cpu, 1> labels,
                Array<T, nb::device::cpu, 1> losses, Array<T, nb::device::cpu, 2> dlogits,
                double grad_scale) {
  const char* op = "sparse_softmax_cross_entropy";
  check_shapes(op, logits, labels.shape(0), losses, dlogits);
  const auto N = static_cast<std::int64_t>(logits.shape(0));
  const auto C = static_cast<std::int64_t>(logits.shape(1));
  for (std::int64_t n = 0; n < N; ++n) {
    const std::int64_t label = labels.data()[n];
    if (label < 0 || label >= C) {
      throw nb::index_error((std::string(op) + ": labels must be in [0, " + std::to_string(C) +
                             "), got " + std::to_string(label) + " at row " + std::to_string(n))
                                .c_str());
    }
  }
  nb::gil_scoped_release release;
  cpu::sparse_softmax_cross_entropy<T>(logits.data(), labels.data(), losses.data(),
                                       dlogits.data(), N, C, static_cast<T>(grad_scale));
}

template <typename T>
void dense_cpu(Array<const T, nb::device::cpu, 2> logits, Array<const T, nb::device::cpu, 2> targets,
               Array<T, nb::device::cpu, 1> losses, Array<T, nb::device::cpu, 2> dlogits,
               double grad_scale) {
  const char* op = "softmax_cross_entropy";
  check_shapes(op, logits, targets.shape(0), losses, dlogits);
  if (targets.shape(1) != logits.shape(1)) {
    throw nb::value_error("softmax_cross_entropy: targets and logits differ in their class count");
  }
  const auto N = static_cast<std::int64_t>(logits.shape(0));
  const auto C = static_cast<std::int64_t>(logits.shape(1));
  nb::gil_scoped_release release;
  cpu::softmax_cross_entropy<T>(logits.data(), targets.data(), losses.data(), dlogits.data(), N,
                                C, static_cast<T>(grad_scale));
}

// The label range of a GPU array is checked by the Python caller (one CuPy
// reduction); the kernel itself turns an out-of-range label into a NaN row.
void sparse_cuda(Array<const float, nb::device::cuda, 2> logits,
                 Array<const std::int64_t, nb::device::cuda, 1> labels,
                 Array<float, nb::device::cuda, 1> losses, Array<float, nb::device::cuda, 2> dlogits,
                 double grad_scale, std::uintptr_t stream) {
  const char* op = "sparse_softmax_cross_entropy";
  check_shapes(op, logits, labels.shape(0), losses, dlogits);
#if FUSEDNN_WITH_CUDA
  nb::gil_scoped_release release;
  cuda::sparse_softmax_cross_entropy(logits.data(), labels.data(), losses.data(), dlogits.data(),
                                     static_cast<std::int64_t>(logits.shape(0)),
                                     static_cast<std::int64_t>(logits.shape(1)),
                                     static_cast<float>(grad_scale), stream);
#else
  no_cuda(op);
#endif
}

void dense_cuda(Array<const float, nb::device::cuda, 2> logits,
                Array<const float, nb::device::cuda, 2> targets,
                Array<float, nb::device::cuda, 1> losses, Array<float, nb::device::cuda, 2> dlogits,
                double grad_scale, std::uintptr_t stream) {
  const char* op = "softmax_cross_entropy";
  check_shapes(op, logits, targets.shape(0), losses, dlogits);
  if (targets.shape(1) != logits.shape(1)) {
    throw nb::value_error("softmax_cross_entropy: targets and logits differ in their class count");
  }
#if FUSEDNN_WITH_CUDA
  nb::gil_scoped_release release;
  cuda::softmax_cross_entropy(logits.data(), targets.data(), losses.data(), dlogits.data(),
                              static_cast<std::int64_t>(logits.shape(0)),
                              static_cast<std::int64_t>(logits.shape(1)),
                              static_cast<float>(grad_scale), stream);
#else
  no_cuda(op);
#endif
}

}  // namespace

void bind_cross_entropy(nb::module_& m) {
  const char* sparse_doc =
      "Fused softmax cross-entropy with integer labels: writes losses (N,) and dlogits (N, C).";
  const char* dense_doc =
      "Fused softmax cross-entropy with target weights (N, C): writes losses (N,) and dlogits (N, C).";
  m.def("sparse_softmax_cross_entropy_cpu", &sparse_cpu<float>, "logits"_a.noconvert(),
        "labels"_a.noconvert(), "losses"_a.noconvert(), "dlogits"_a.noconvert(), "grad_scale"_a,
        sparse_doc);
  m.def("sparse_softmax_cross_entropy_cpu", &sparse_cpu<double>, "logits"_a.noconvert(),
        "labels"_a.noconvert(), "losses"_a.noconvert(), "dlogits"_a.noconvert(), "grad_scale"_a,
        sparse_doc);
  m.def("softmax_cross_entropy_cpu", &dense_cpu<float>, "logits"_a.noconvert(),
        "targets"_a.noconvert(), "losses"_a.noconvert(), "dlogits"_a.noconvert(), "grad_scale"_a,
        dense_doc);
  m.def("softmax_cross_entropy_cpu", &dense_cpu<double>, "logits"_a.noconvert(),
        "targets"_a.noconvert(), "losses"_a.noconvert(), "dlogits"_a.noconvert(), "grad_scale"_a,
        dense_doc);
  m.def("sparse_softmax_cross_entropy_cuda", &sparse_cuda, "logits"_a.noconvert(),
        "labels"_a.noconvert(), "losses"_a.noconvert(), "dlogits"_a.noconvert(), "grad_scale"_a,
        "stream"_a, sparse_doc);
  m.def("softmax_cross_entropy_cuda", &dense_cuda, "logits"_a.noconvert(), "targets"_a.noconvert(),
        "losses"_a.noconvert(), "dlogits"_a.noconvert(), "grad_scale"_a, "stream"_a, dense_doc);
}

}  // namespace fusednn::bindings
