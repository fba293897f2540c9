// Bindings for the fused recurrent kernels (fusednn/recurrent.h). The caller
// (python/fusednn/ops/recurrent.py) validates everything and allocates outputs,
// caches and workspaces; this layer re-checks every shape (one check function
// per op, shared by the CPU and CUDA entry points) so that a direct call cannot
// read or write out of bounds, then releases the GIL and calls one launcher.
// Optional arrays (masks, training caches, dh_T) are None or arrays. The CUDA
// entry points take float32 device arrays, a float32 workspace of
// recurrent_cuda_workspace_elements(...) elements, the forward algorithm
// ('auto', 'per_step', 'persistent'; the one that ran is returned) and the
// stream; in a build without CUDA they raise RuntimeError.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <stdexcept>
#include <string>

#include "bindings.h"
#include "fusednn/recurrent.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace fusednn::bindings {

namespace {

template <typename T, typename Device, std::size_t Ndim>
using Array = nb::ndarray<T, nb::ndim<Ndim>, nb::c_contig, Device>;
template <typename T, typename Device, std::size_t Ndim>
using Optional = std::optional<Array<T, Device, Ndim>>;

template <typename A>
std::string shape_str(const A& a) {
  std::string s = "(";
  for (std::size_t d = 0; d < a.ndim(); ++d) {
    s += (d ? ", " : "") + std::to_string(a.shape(d));
  }
  return s + (a.ndim() == 1 ? ",)" : ")");
}

std::string dims_str(std::initializer_list<std::int64_t> dims) {
  std::string s = "(";
  std::size_t d = 0;
  for (std::int64_t v : dims) s += (d++ ? ", " : "") + std::to_string(v);
  return s + (dims.size() == 1 ? ",)" : ")");
}

template <typename A>
void expect(const char* op, const char* name, const A& a,
            std::initializer_list<std::int64_t> dims) {
  bool ok = a.ndim() == dims.size();
  std::size_t d = 0;
  for (std::int64_t v : dims) ok = ok && static_cast<std::int64_t>(a.shape(d++)) == v;
  if (!ok) {
    throw nb::value_error((std::string(op) + ": " + name + " must have shape " + dims_str(dims) +
                           ", got " + shape_str(a))
                              .c_str());
  }
}

template <typename A>
void expect(const char* op, const char* name, const std::optional<A>& a,
            std::initializer_list<std::int64_t> dims) {
  if (a) expect(op, name, *a, dims);
}

template <typename A>
auto data_or_null(const std::optional<A>& a) -> decltype(a->data()) {
  return a ? a->data() : nullptr;
}

// Sizes from x (N, T, F) and recurrent_kernel (U, gU); every other array is
// checked against them.
template <typename X, typename R>
RecurrentShape shape_of(const char* op, const X& x, const R& recurrent_kernel, std::int64_t gates) {
  const RecurrentShape s{static_cast<std::int64_t>(x.shape(0)),
                         static_cast<std::int64_t>(x.shape(1)),
                         static_cast<std::int64_t>(x.shape(2)),
                         static_cast<std::int64_t>(recurrent_kernel.shape(0))};
  if (s.T < 1 || s.F < 1 || s.U < 1) {
    throw nb::value_error((std::string(op) + ": need T, F, U >= 1, got x " + shape_str(x) +
                           " and recurrent_kernel " + shape_str(recurrent_kernel))
                              .c_str());
  }
  expect(op, "recurrent_kernel", recurrent_kernel, {s.U, gates * s.U});
  return s;
}

void expect_present(const char* op, const char* name, bool present, bool wanted,
                    const char* when) {
  if (present != wanted) {
    const char* verb = wanted ? " is required " : " must be None ";
    throw nb::value_error((std::string(op) + ": " + name + verb + when).c_str());
  }
}

RnnActivation activation_of(const char* op, const std::string& name) {
  if (name == "tanh") return RnnActivation::kTanh;
  if (name == "relu") return RnnActivation::kRelu;
  throw nb::value_error(
      (std::string(op) + ": activation must be 'tanh' or 'relu', got '" + name + "'").c_str());
}

#if FUSEDNN_WITH_CUDA
cuda::RecurrentAlgorithm algorithm_of(const char* op, const std::string& name) {
  if (name == "auto") return cuda::RecurrentAlgorithm::kAuto;
  if (name == "per_step") return cuda::RecurrentAlgorithm::kPerStep;
  if (name == "persistent") return cuda::RecurrentAlgorithm::kPersistent;
  throw nb::value_error((std::string(op) + ": algorithm must be 'auto', 'per_step' or " +
                         "'persistent', got '" + name + "'")
                            .c_str());
}

template <typename W>
void expect_workspace(const char* op, const W& workspace, cuda::RecurrentKernel kernel,
                      const RecurrentShape& s) {
  const std::int64_t needed = cuda::workspace_elements(kernel, s);
  if (static_cast<std::int64_t>(workspace.shape(0)) < needed) {
    throw nb::value_error((std::string(op) + ": workspace needs " + std::to_string(needed) +
                           " elements, got " + std::to_string(workspace.shape(0)))
                              .c_str());
  }
}
#else
[[noreturn]] void no_cuda(const char* op) {
  throw std::runtime_error(std::string(op) +
                           ": this fusednn build has no CUDA kernels (built with FUSEDNN_CUDA=OFF "
                           "or without nvcc)");
}
#endif

void expect_training_caches(const char* op, bool any, bool all) {
  if (any && !all) {
    throw nb::value_error(
        (std::string(op) + ": the training caches must be given all together or not at all")
            .c_str());
  }
}

// ---------------------------------------------------------------------------
// Array types: In<T, D, k> read-only input, Out<T, D, k> written, OptIn/OptOut
// the same or None. D is nb::device::cpu or nb::device::cuda.

template <typename T, typename D, std::size_t K>
using In = Array<const T, D, K>;
template <typename T, typename D, std::size_t K>
using Out = Array<T, D, K>;
template <typename T, typename D, std::size_t K>
using OptIn = Optional<const T, D, K>;
template <typename T, typename D, std::size_t K>
using OptOut = Optional<T, D, K>;
using Mask = std::uint8_t;
using Cpu = nb::device::cpu;
using Gpu = nb::device::cuda;
template <typename D>
using Workspace = Array<float, D, 1>;

// ---------------------------------------------------------------------------
// LSTM

template <typename Real, typename D>
RecurrentShape check_lstm_forward(const In<Real, D, 3>& x, const In<Real, D, 2>& h0,
                                  const In<Real, D, 2>& c0, const In<Real, D, 2>& kernel,
                                  const In<Real, D, 2>& recurrent_kernel,
                                  const In<Real, D, 1>& bias, const OptIn<Mask, D, 2>& mask,
                                  const OptIn<Real, D, 2>& recurrent_mask,
                                  const Out<Real, D, 3>& y, const Out<Real, D, 2>& h_T,
                                  const Out<Real, D, 2>& c_T, const Out<Real, D, 3>& gates,
                                  const OptOut<Real, D, 3>& cell, const OptOut<Real, D, 3>& h_in) {
  const char* op = "lstm_forward";
  const RecurrentShape s = shape_of(op, x, recurrent_kernel, 4);
  expect(op, "h0", h0, {s.N, s.U});
  expect(op, "c0", c0, {s.N, s.U});
  expect(op, "kernel", kernel, {s.F, 4 * s.U});
  expect(op, "bias", bias, {4 * s.U});
  expect(op, "mask", mask, {s.N, s.T});
  expect(op, "recurrent_mask", recurrent_mask, {s.N, s.U});
  expect(op, "y", y, {s.N, s.T, s.U});
  expect(op, "h_T", h_T, {s.N, s.U});
  expect(op, "c_T", c_T, {s.N, s.U});
  expect(op, "gates", gates, {s.N, s.T, 4 * s.U});
  expect(op, "cell", cell, {s.N, s.T, s.U});
  expect(op, "h_in", h_in, {s.N, s.T, s.U});
  expect_training_caches(op, cell || h_in, cell && h_in);
  return s;
}

template <typename Real, typename D>
RecurrentShape check_lstm_backward(
    const In<Real, D, 3>& x, const In<Real, D, 2>& c0, const In<Real, D, 2>& kernel,
    const In<Real, D, 2>& recurrent_kernel, const OptIn<Mask, D, 2>& mask,
    const OptIn<Real, D, 2>& recurrent_mask, const In<Real, D, 3>& gates,
    const In<Real, D, 3>& cell, const In<Real, D, 3>& h_in, const In<Real, D, 3>& dy,
    const OptIn<Real, D, 2>& dh_T, const OptIn<Real, D, 2>& dc_T, const Out<Real, D, 3>& dx,
    const Out<Real, D, 2>& dh0, const Out<Real, D, 2>& dc0, const Out<Real, D, 2>& dkernel,
    const Out<Real, D, 2>& drecurrent_kernel, const Out<Real, D, 1>& dbias,
    const Out<Real, D, 3>& dgates) {
  const char* op = "lstm_backward";
  const RecurrentShape s = shape_of(op, x, recurrent_kernel, 4);
  const std::int64_t G = 4 * s.U;
  expect(op, "c0", c0, {s.N, s.U});
  expect(op, "kernel", kernel, {s.F, G});
  expect(op, "mask", mask, {s.N, s.T});
  expect(op, "recurrent_mask", recurrent_mask, {s.N, s.U});
  expect(op, "gates", gates, {s.N, s.T, G});
  expect(op, "cell", cell, {s.N, s.T, s.U});
  expect(op, "h_in", h_in, {s.N, s.T, s.U});
  expect(op, "dy", dy, {s.N, s.T, s.U});
  expect(op, "dh_T", dh_T, {s.N, s.U});
  expect(op, "dc_T", dc_T, {s.N, s.U});
  expect(op, "dx", dx, {s.N, s.T, s.F});
  expect(op, "dh0", dh0, {s.N, s.U});
  expect(op, "dc0", dc0, {s.N, s.U});
  expect(op, "dkernel", dkernel, {s.F, G});
  expect(op, "drecurrent_kernel", drecurrent_kernel, {s.U, G});
  expect(op, "dbias", dbias, {G});
  expect(op, "dgates", dgates, {s.N, s.T, G});
  return s;
}

template <typename Real>
void lstm_forward_cpu(In<Real, Cpu, 3> x, In<Real, Cpu, 2> h0, In<Real, Cpu, 2> c0,
                      In<Real, Cpu, 2> kernel, In<Real, Cpu, 2> recurrent_kernel,
                      In<Real, Cpu, 1> bias, OptIn<Mask, Cpu, 2> mask,
                      OptIn<Real, Cpu, 2> recurrent_mask, Out<Real, Cpu, 3> y,
                      Out<Real, Cpu, 2> h_T, Out<Real, Cpu, 2> c_T, Out<Real, Cpu, 3> gates,
                      OptOut<Real, Cpu, 3> cell, OptOut<Real, Cpu, 3> h_in) {
  const RecurrentShape s = check_lstm_forward<Real, Cpu>(x, h0, c0, kernel, recurrent_kernel,
                                                         bias, mask, recurrent_mask, y, h_T, c_T,
                                                         gates, cell, h_in);
  nb::gil_scoped_release release;
  cpu::lstm_forward<Real>(s, x.data(), h0.data(), c0.data(), kernel.data(),
                          recurrent_kernel.data(), bias.data(), data_or_null(mask),
                          data_or_null(recurrent_mask), y.data(), h_T.data(), c_T.data(),
                          gates.data(), data_or_null(cell), data_or_null(h_in));
}

template <typename Real>
void lstm_backward_cpu(In<Real, Cpu, 3> x, In<Real, Cpu, 2> c0, In<Real, Cpu, 2> kernel,
                       In<Real, Cpu, 2> recurrent_kernel, OptIn<Mask, Cpu, 2> mask,
                       OptIn<Real, Cpu, 2> recurrent_mask, In<Real, Cpu, 3> gates,
                       In<Real, Cpu, 3> cell, In<Real, Cpu, 3> h_in, In<Real, Cpu, 3> dy,
                       OptIn<Real, Cpu, 2> dh_T, OptIn<Real, Cpu, 2> dc_T, Out<Real, Cpu, 3> dx,
                       Out<Real, Cpu, 2> dh0, Out<Real, Cpu, 2> dc0, Out<Real, Cpu, 2> dkernel,
                       Out<Real, Cpu, 2> drecurrent_kernel, Out<Real, Cpu, 1> dbias,
                       Out<Real, Cpu, 3> dgates) {
  const RecurrentShape s = check_lstm_backward<Real, Cpu>(
      x, c0, kernel, recurrent_kernel, mask, recurrent_mask, gates, cell, h_in, dy, dh_T, dc_T,
      dx, dh0, dc0, dkernel, drecurrent_kernel, dbias, dgates);
  nb::gil_scoped_release release;
  cpu::lstm_backward<Real>(s, x.data(), c0.data(), kernel.data(), recurrent_kernel.data(),
                           data_or_null(mask), data_or_null(recurrent_mask), gates.data(),
                           cell.data(), h_in.data(), dy.data(), data_or_null(dh_T),
                           data_or_null(dc_T), dx.data(), dh0.data(), dc0.data(), dkernel.data(),
                           drecurrent_kernel.data(), dbias.data(), dgates.data());
}

std::string lstm_forward_cuda(In<float, Gpu, 3> x, In<float, Gpu, 2> h0, In<float, Gpu, 2> c0,
                              In<float, Gpu, 2> kernel, In<float, Gpu, 2> recurrent_kernel,
                              In<float, Gpu, 1> bias, OptIn<Mask, Gpu, 2> mask,
                              OptIn<float, Gpu, 2> recurrent_mask, Out<float, Gpu, 3> y,
                              Out<float, Gpu, 2> h_T, Out<float, Gpu, 2> c_T,
                              Out<float, Gpu, 3> gates, OptOut<float, Gpu, 3> cell,
                              OptOut<float, Gpu, 3> h_in, Workspace<Gpu> workspace,
                              const std::string& algorithm, std::uintptr_t stream) {
  const RecurrentShape s = check_lstm_forward<float, Gpu>(x, h0, c0, kernel, recurrent_kernel,
                                                          bias, mask, recurrent_mask, y, h_T, c_T,
                                                          gates, cell, h_in);
#if FUSEDNN_WITH_CUDA
  const char* op = "lstm_forward";
  const cuda::RecurrentAlgorithm requested = algorithm_of(op, algorithm);
  expect_workspace(op, workspace, cuda::RecurrentKernel::kForward, s);
  nb::gil_scoped_release release;
  return cuda::algorithm_name(cuda::lstm_forward(
      s, requested, x.data(), h0.data(), c0.data(), kernel.data(), recurrent_kernel.data(),
      bias.data(), data_or_null(mask), data_or_null(recurrent_mask), y.data(), h_T.data(),
      c_T.data(), gates.data(), data_or_null(cell), data_or_null(h_in), workspace.data(),
      stream));
#else
  (void)s;
  no_cuda("lstm_forward");
#endif
}

void lstm_backward_cuda(In<float, Gpu, 3> x, In<float, Gpu, 2> c0, In<float, Gpu, 2> kernel,
                        In<float, Gpu, 2> recurrent_kernel, OptIn<Mask, Gpu, 2> mask,
                        OptIn<float, Gpu, 2> recurrent_mask, In<float, Gpu, 3> gates,
                        In<float, Gpu, 3> cell, In<float, Gpu, 3> h_in, In<float, Gpu, 3> dy,
                        OptIn<float, Gpu, 2> dh_T, OptIn<float, Gpu, 2> dc_T,
                        Out<float, Gpu, 3> dx, Out<float, Gpu, 2> dh0, Out<float, Gpu, 2> dc0,
                        Out<float, Gpu, 2> dkernel, Out<float, Gpu, 2> drecurrent_kernel,
                        Out<float, Gpu, 1> dbias, Out<float, Gpu, 3> dgates,
                        Workspace<Gpu> workspace, std::uintptr_t stream) {
  const RecurrentShape s = check_lstm_backward<float, Gpu>(
      x, c0, kernel, recurrent_kernel, mask, recurrent_mask, gates, cell, h_in, dy, dh_T, dc_T,
      dx, dh0, dc0, dkernel, drecurrent_kernel, dbias, dgates);
#if FUSEDNN_WITH_CUDA
  expect_workspace("lstm_backward", workspace, cuda::RecurrentKernel::kBackward, s);
  nb::gil_scoped_release release;
  cuda::lstm_backward(s, x.data(), c0.data(), kernel.data(), recurrent_kernel.data(),
                      data_or_null(mask), data_or_null(recurrent_mask), gates.data(), cell.data(),
                      h_in.data(), dy.data(), data_or_null(dh_T), data_or_null(dc_T), dx.data(),
                      dh0.data(), dc0.data(), dkernel.data(), drecurrent_kernel.data(),
                      dbias.data(), dgates.data(), workspace.data(), stream);
#else
  (void)s;
  no_cuda("lstm_backward");
#endif
}

// ---------------------------------------------------------------------------
// GRU (bias and dbias flattened: (2, 3U) -> (6U,) when reset_after, else (3U,))

template <typename Real, typename D>
RecurrentShape check_gru_forward(bool reset_after, const In<Real, D, 3>& x,
                                 const In<Real, D, 2>& h0, const In<Real, D, 2>& kernel,
                                 const In<Real, D, 2>& recurrent_kernel,
                                 const In<Real, D, 1>& bias, const OptIn<Mask, D, 2>& mask,
                                 const OptIn<Real, D, 2>& recurrent_mask,
                                 const Out<Real, D, 3>& y, const Out<Real, D, 2>& h_T,
                                 const Out<Real, D, 3>& gates, const OptOut<Real, D, 3>& h_in,
                                 const OptOut<Real, D, 3>& h_prev,
                                 const OptOut<Real, D, 3>& recurrent_h) {
  const char* op = "gru_forward";
  const RecurrentShape s = shape_of(op, x, recurrent_kernel, 3);
  const std::int64_t G = 3 * s.U;
  expect(op, "h0", h0, {s.N, s.U});
  expect(op, "kernel", kernel, {s.F, G});
  expect(op, "bias", bias, {reset_after ? 2 * G : G});
  expect(op, "mask", mask, {s.N, s.T});
  expect(op, "recurrent_mask", recurrent_mask, {s.N, s.U});
  expect(op, "y", y, {s.N, s.T, s.U});
  expect(op, "h_T", h_T, {s.N, s.U});
  expect(op, "gates", gates, {s.N, s.T, G});
  expect(op, "h_in", h_in, {s.N, s.T, s.U});
  expect(op, "h_prev", h_prev, {s.N, s.T, s.U});
  expect(op, "recurrent_h", recurrent_h, {s.N, s.T, s.U});
  const bool training = h_in.has_value();
  expect_training_caches(op, training || recurrent_h, training && recurrent_h);
  expect_present(op, "h_prev", h_prev.has_value(), training && recurrent_mask,
                 "exactly in training with a recurrent_mask");
  return s;
}

template <typename Real, typename D>
RecurrentShape check_gru_backward(
    bool reset_after, const In<Real, D, 3>& x, const In<Real, D, 2>& kernel,
    const In<Real, D, 2>& recurrent_kernel, const OptIn<Mask, D, 2>& mask,
    const OptIn<Real, D, 2>& recurrent_mask, const In<Real, D, 3>& gates,
    const In<Real, D, 3>& h_in, const OptIn<Real, D, 3>& h_prev,
    const In<Real, D, 3>& recurrent_h, const In<Real, D, 3>& dy, const OptIn<Real, D, 2>& dh_T,
    const Out<Real, D, 3>& dx, const Out<Real, D, 2>& dh0, const Out<Real, D, 2>& dkernel,
    const Out<Real, D, 2>& drecurrent_kernel, const Out<Real, D, 1>& dbias,
    const Out<Real, D, 3>& dgates, const OptOut<Real, D, 3>& dgates_recurrent) {
  const char* op = "gru_backward";
  const RecurrentShape s = shape_of(op, x, recurrent_kernel, 3);
  const std::int64_t G = 3 * s.U;
  expect(op, "kernel", kernel, {s.F, G});
  expect(op, "mask", mask, {s.N, s.T});
  expect(op, "recurrent_mask", recurrent_mask, {s.N, s.U});
  expect(op, "gates", gates, {s.N, s.T, G});
  expect(op, "h_in", h_in, {s.N, s.T, s.U});
  expect(op, "h_prev", h_prev, {s.N, s.T, s.U});
  expect(op, "recurrent_h", recurrent_h, {s.N, s.T, s.U});
  expect(op, "dy", dy, {s.N, s.T, s.U});
  expect(op, "dh_T", dh_T, {s.N, s.U});
  expect(op, "dx", dx, {s.N, s.T, s.F});
  expect(op, "dh0", dh0, {s.N, s.U});
  expect(op, "dkernel", dkernel, {s.F, G});
  expect(op, "drecurrent_kernel", drecurrent_kernel, {s.U, G});
  expect(op, "dbias", dbias, {reset_after ? 2 * G : G});
  expect(op, "dgates", dgates, {s.N, s.T, G});
  expect(op, "dgates_recurrent", dgates_recurrent, {s.N, s.T, G});
  expect_present(op, "h_prev", h_prev.has_value(), recurrent_mask.has_value(),
                 "exactly with a recurrent_mask");
  expect_present(op, "dgates_recurrent", dgates_recurrent.has_value(), reset_after,
                 "exactly when reset_after");
  return s;
}

template <typename Real>
void gru_forward_cpu(bool reset_after, In<Real, Cpu, 3> x, In<Real, Cpu, 2> h0,
                     In<Real, Cpu, 2> kernel, In<Real, Cpu, 2> recurrent_kernel,
                     In<Real, Cpu, 1> bias, OptIn<Mask, Cpu, 2> mask,
                     OptIn<Real, Cpu, 2> recurrent_mask, Out<Real, Cpu, 3> y,
                     Out<Real, Cpu, 2> h_T, Out<Real, Cpu, 3> gates, OptOut<Real, Cpu, 3> h_in,
                     OptOut<Real, Cpu, 3> h_prev, OptOut<Real, Cpu, 3> recurrent_h) {
  const RecurrentShape s = check_gru_forward<Real, Cpu>(reset_after, x, h0, kernel,
                                                        recurrent_kernel, bias, mask,
                                                        recurrent_mask, y, h_T, gates, h_in,
                                                        h_prev, recurrent_h);
  nb::gil_scoped_release release;
  cpu::gru_forward<Real>(s, reset_after, x.data(), h0.data(), kernel.data(),
                         recurrent_kernel.data(), bias.data(), data_or_null(mask),
                         data_or_null(recurrent_mask), y.data(), h_T.data(), gates.data(),
                         data_or_null(h_in), data_or_null(h_prev), data_or_null(recurrent_h));
}

template <typename Real>
void gru_backward_cpu(bool reset_after, In<Real, Cpu, 3> x, In<Real, Cpu, 2> kernel,
                      In<Real, Cpu, 2> recurrent_kernel, OptIn<Mask, Cpu, 2> mask,
                      OptIn<Real, Cpu, 2> recurrent_mask, In<Real, Cpu, 3> gates,
                      In<Real, Cpu, 3> h_in, OptIn<Real, Cpu, 3> h_prev,
                      In<Real, Cpu, 3> recurrent_h, In<Real, Cpu, 3> dy,
                      OptIn<Real, Cpu, 2> dh_T, Out<Real, Cpu, 3> dx, Out<Real, Cpu, 2> dh0,
                      Out<Real, Cpu, 2> dkernel, Out<Real, Cpu, 2> drecurrent_kernel,
                      Out<Real, Cpu, 1> dbias, Out<Real, Cpu, 3> dgates,
                      OptOut<Real, Cpu, 3> dgates_recurrent) {
  const RecurrentShape s = check_gru_backward<Real, Cpu>(
      reset_after, x, kernel, recurrent_kernel, mask, recurrent_mask, gates, h_in, h_prev,
      recurrent_h, dy, dh_T, dx, dh0, dkernel, drecurrent_kernel, dbias, dgates,
      dgates_recurrent);
  nb::gil_scoped_release release;
  cpu::gru_backward<Real>(s, reset_after, x.data(), kernel.data(), recurrent_kernel.data(),
                          data_or_null(mask), data_or_null(recurrent_mask), gates.data(),
                          h_in.data(), data_or_null(h_prev), recurrent_h.data(), dy.data(),
                          data_or_null(dh_T), dx.data(), dh0.data(), dkernel.data(),
                          drecurrent_kernel.data(), dbias.data(), dgates.data(),
                          data_or_null(dgates_recurrent));
}

std::string gru_forward_cuda(bool reset_after, In<float, Gpu, 3> x, In<float, Gpu, 2> h0,
                             In<float, Gpu, 2> kernel, In<float, Gpu, 2> recurrent_kernel,
                             In<float, Gpu, 1> bias, OptIn<Mask, Gpu, 2> mask,
                             OptIn<float, Gpu, 2> recurrent_mask, Out<float, Gpu, 3> y,
                             Out<float, Gpu, 2> h_T, Out<float, Gpu, 3> gates,
                             OptOut<float, Gpu, 3> h_in, OptOut<float, Gpu, 3> h_prev,
                             OptOut<float, Gpu, 3> recurrent_h, Workspace<Gpu> workspace,
                             const std::string& algorithm, std::uintptr_t stream) {
  const RecurrentShape s = check_gru_forward<float, Gpu>(reset_after, x, h0, kernel,
                                                         recurrent_kernel, bias, mask,
                                                         recurrent_mask, y, h_T, gates, h_in,
                                                         h_prev, recurrent_h);
#if FUSEDNN_WITH_CUDA
  const char* op = "gru_forward";
  const cuda::RecurrentAlgorithm requested = algorithm_of(op, algorithm);
  expect_workspace(op, workspace, cuda::RecurrentKernel::kForward, s);
  nb::gil_scoped_release release;
  return cuda::algorithm_name(cuda::gru_forward(
      s, requested, reset_after, x.data(), h0.data(), kernel.data(), recurrent_kernel.data(),
      bias.data(), data_or_null(mask), data_or_null(recurrent_mask), y.data(), h_T.data(),
      gates.data(), data_or_null(h_in), data_or_null(h_prev), data_or_null(recurrent_h),
      workspace.data(), stream));
#else
  (void)s;
  no_cuda("gru_forward");
#endif
}

void gru_backward_cuda(bool reset_after, In<float, Gpu, 3> x, In<float, Gpu, 2> kernel,
                       In<float, Gpu, 2> recurrent_kernel, OptIn<Mask, Gpu, 2> mask,
                       OptIn<float, Gpu, 2> recurrent_mask, In<float, Gpu, 3> gates,
                       In<float, Gpu, 3> h_in, OptIn<float, Gpu, 3> h_prev,
                       In<float, Gpu, 3> recurrent_h, In<float, Gpu, 3> dy,
                       OptIn<float, Gpu, 2> dh_T, Out<float, Gpu, 3> dx, Out<float, Gpu, 2> dh0,
                       Out<float, Gpu, 2> dkernel, Out<float, Gpu, 2> drecurrent_kernel,
                       Out<float, Gpu, 1> dbias, Out<float, Gpu, 3> dgates,
                       OptOut<float, Gpu, 3> dgates_recurrent, Workspace<Gpu> workspace,
                       std::uintptr_t stream) {
  const RecurrentShape s = check_gru_backward<float, Gpu>(
      reset_after, x, kernel, recurrent_kernel, mask, recurrent_mask, gates, h_in, h_prev,
      recurrent_h, dy, dh_T, dx, dh0, dkernel, drecurrent_kernel, dbias, dgates,
      dgates_recurrent);
#if FUSEDNN_WITH_CUDA
  expect_workspace("gru_backward", workspace, cuda::RecurrentKernel::kBackward, s);
  nb::gil_scoped_release release;
  cuda::gru_backward(s, reset_after, x.data(), kernel.data(), recurrent_kernel.data(),
                     data_or_null(mask), data_or_null(recurrent_mask), gates.data(), h_in.data(),
                     data_or_null(h_prev), recurrent_h.data(), dy.data(), data_or_null(dh_T),
                     dx.data(), dh0.data(), dkernel.data(), drecurrent_kernel.data(),
                     dbias.data(), dgates.data(), data_or_null(dgates_recurrent),
                     workspace.data(), stream);
#else
  (void)s;
  no_cuda("gru_backward");
#endif
}

// ---------------------------------------------------------------------------
// SimpleRNN

template <typename Real, typename D>
RecurrentShape check_simple_rnn_forward(const In<Real, D, 3>& x, const In<Real, D, 2>& h0,
                                        const In<Real, D, 2>& kernel,
                                        const In<Real, D, 2>& recurrent_kernel,
                                        const In<Real, D, 1>& bias,
                                        const OptIn<Mask, D, 2>& mask,
                                        const OptIn<Real, D, 2>& recurrent_mask,
                                        const Out<Real, D, 3>& y, const Out<Real, D, 2>& h_T,
                                        const Out<Real, D, 3>& gates,
                                        const OptOut<Real, D, 3>& h_in) {
  const char* op = "simple_rnn_forward";
  const RecurrentShape s = shape_of(op, x, recurrent_kernel, 1);
  expect(op, "h0", h0, {s.N, s.U});
  expect(op, "kernel", kernel, {s.F, s.U});
  expect(op, "bias", bias, {s.U});
  expect(op, "mask", mask, {s.N, s.T});
  expect(op, "recurrent_mask", recurrent_mask, {s.N, s.U});
  expect(op, "y", y, {s.N, s.T, s.U});
  expect(op, "h_T", h_T, {s.N, s.U});
  expect(op, "gates", gates, {s.N, s.T, s.U});
  expect(op, "h_in", h_in, {s.N, s.T, s.U});
  return s;
}

template <typename Real, typename D>
RecurrentShape check_simple_rnn_backward(
    const In<Real, D, 3>& x, const In<Real, D, 2>& kernel, const In<Real, D, 2>& recurrent_kernel,
    const OptIn<Mask, D, 2>& mask, const OptIn<Real, D, 2>& recurrent_mask,
    const In<Real, D, 3>& gates, const In<Real, D, 3>& h_in, const In<Real, D, 3>& dy,
    const OptIn<Real, D, 2>& dh_T, const Out<Real, D, 3>& dx, const Out<Real, D, 2>& dh0,
    const Out<Real, D, 2>& dkernel, const Out<Real, D, 2>& drecurrent_kernel,
    const Out<Real, D, 1>& dbias, const Out<Real, D, 3>& dgates) {
  const char* op = "simple_rnn_backward";
  const RecurrentShape s = shape_of(op, x, recurrent_kernel, 1);
  expect(op, "kernel", kernel, {s.F, s.U});
  expect(op, "mask", mask, {s.N, s.T});
  expect(op, "recurrent_mask", recurrent_mask, {s.N, s.U});
  expect(op, "gates", gates, {s.N, s.T, s.U});
  expect(op, "h_in", h_in, {s.N, s.T, s.U});
  expect(op, "dy", dy, {s.N, s.T, s.U});
  expect(op, "dh_T", dh_T, {s.N, s.U});
  expect(op, "dx", dx, {s.N, s.T, s.F});
  expect(op, "dh0", dh0, {s.N, s.U});
  expect(op, "dkernel", dkernel, {s.F, s.U});
  expect(op, "drecurrent_kernel", drecurrent_kernel, {s.U, s.U});
  expect(op, "dbias", dbias, {s.U});
  expect(op, "dgates", dgates, {s.N, s.T, s.U});
  return s;
}

template <typename Real>
void simple_rnn_forward_cpu(const std::string& activation, In<Real, Cpu, 3> x,
                            In<Real, Cpu, 2> h0, In<Real, Cpu, 2> kernel,
                            In<Real, Cpu, 2> recurrent_kernel, In<Real, Cpu, 1> bias,
                            OptIn<Mask, Cpu, 2> mask, OptIn<Real, Cpu, 2> recurrent_mask,
                            Out<Real, Cpu, 3> y, Out<Real, Cpu, 2> h_T, Out<Real, Cpu, 3> gates,
                            OptOut<Real, Cpu, 3> h_in) {
  const RnnActivation act = activation_of("simple_rnn_forward", activation);
  const RecurrentShape s = check_simple_rnn_forward<Real, Cpu>(
      x, h0, kernel, recurrent_kernel, bias, mask, recurrent_mask, y, h_T, gates, h_in);
  nb::gil_scoped_release release;
  cpu::simple_rnn_forward<Real>(s, act, x.data(), h0.data(), kernel.data(),
                                recurrent_kernel.data(), bias.data(), data_or_null(mask),
                                data_or_null(recurrent_mask), y.data(), h_T.data(), gates.data(),
                                data_or_null(h_in));
}

template <typename Real>
void simple_rnn_backward_cpu(const std::string& activation, In<Real, Cpu, 3> x,
                             In<Real, Cpu, 2> kernel, In<Real, Cpu, 2> recurrent_kernel,
                             OptIn<Mask, Cpu, 2> mask, OptIn<Real, Cpu, 2> recurrent_mask,
                             In<Real, Cpu, 3> gates, In<Real, Cpu, 3> h_in, In<Real, Cpu, 3> dy,
                             OptIn<Real, Cpu, 2> dh_T, Out<Real, Cpu, 3> dx,
                             Out<Real, Cpu, 2> dh0, Out<Real, Cpu, 2> dkernel,
                             Out<Real, Cpu, 2> drecurrent_kernel, Out<Real, Cpu, 1> dbias,
                             Out<Real, Cpu, 3> dgates) {
  const RnnActivation act = activation_of("simple_rnn_backward", activation);
  const RecurrentShape s = check_simple_rnn_backward<Real, Cpu>(
      x, kernel, recurrent_kernel, mask, recurrent_mask, gates, h_in, dy, dh_T, dx, dh0, dkernel,
      drecurrent_kernel, dbias, dgates);
  nb::gil_scoped_release release;
  cpu::simple_rnn_backward<Real>(s, act, x.data(), kernel.data(), recurrent_kernel.data(),
                                 data_or_null(mask), data_or_null(recurrent_mask), gates.data(),
                                 h_in.data(), dy.data(), data_or_null(dh_T), dx.data(),
                                 dh0.data(), dkernel.data(), drecurrent_kernel.data(),
                                 dbias.data(), dgates.data());
}

std::string simple_rnn_forward_cuda(const std::string& activation, In<float, Gpu, 3> x,
                                    In<float, Gpu, 2> h0, In<float, Gpu, 2> kernel,
                                    In<float, Gpu, 2> recurrent_kernel, In<float, Gpu, 1> bias,
                                    OptIn<Mask, Gpu, 2> mask,
                                    OptIn<float, Gpu, 2> recurrent_mask, Out<float, Gpu, 3> y,
                                    Out<float, Gpu, 2> h_T, Out<float, Gpu, 3> gates,
                                    OptOut<float, Gpu, 3> h_in, Workspace<Gpu> workspace,
                                    const std::string& algorithm, std::uintptr_t stream) {
  const char* op = "simple_rnn_forward";
  const RnnActivation act = activation_of(op, activation);
  const RecurrentShape s = check_simple_rnn_forward<float, Gpu>(
      x, h0, kernel, recurrent_kernel, bias, mask, recurrent_mask, y, h_T, gates, h_in);
#if FUSEDNN_WITH_CUDA
  const cuda::RecurrentAlgorithm requested = algorithm_of(op, algorithm);
  expect_workspace(op, workspace, cuda::RecurrentKernel::kForward, s);
  nb::gil_scoped_release release;
  return cuda::algorithm_name(cuda::simple_rnn_forward(
      s, requested, act, x.data(), h0.data(), kernel.data(), recurrent_kernel.data(),
      bias.data(), data_or_null(mask), data_or_null(recurrent_mask), y.data(), h_T.data(),
      gates.data(), data_or_null(h_in), workspace.data(), stream));
#else
  (void)s, (void)act;
  no_cuda(op);
#endif
}

void simple_rnn_backward_cuda(const std::string& activation, In<float, Gpu, 3> x,
                              In<float, Gpu, 2> kernel, In<float, Gpu, 2> recurrent_kernel,
                              OptIn<Mask, Gpu, 2> mask, OptIn<float, Gpu, 2> recurrent_mask,
                              In<float, Gpu, 3> gates, In<float, Gpu, 3> h_in,
                              In<float, Gpu, 3> dy, OptIn<float, Gpu, 2> dh_T,
                              Out<float, Gpu, 3> dx, Out<float, Gpu, 2> dh0,
                              Out<float, Gpu, 2> dkernel, Out<float, Gpu, 2> drecurrent_kernel,
                              Out<float, Gpu, 1> dbias, Out<float, Gpu, 3> dgates,
                              Workspace<Gpu> workspace, std::uintptr_t stream) {
  const char* op = "simple_rnn_backward";
  const RnnActivation act = activation_of(op, activation);
  const RecurrentShape s = check_simple_rnn_backward<float, Gpu>(
      x, kernel, recurrent_kernel, mask, recurrent_mask, gates, h_in, dy, dh_T, dx, dh0, dkernel,
      drecurrent_kernel, dbias, dgates);
#if FUSEDNN_WITH_CUDA
  expect_workspace(op, workspace, cuda::RecurrentKernel::kBackward, s);
  nb::gil_scoped_release release;
  cuda::simple_rnn_backward(s, act, x.data(), kernel.data(), recurrent_kernel.data(),
                            data_or_null(mask), data_or_null(recurrent_mask), gates.data(),
                            h_in.data(), dy.data(), data_or_null(dh_T), dx.data(), dh0.data(),
                            dkernel.data(), drecurrent_kernel.data(), dbias.data(),
                            dgates.data(), workspace.data(), stream);
#else
  (void)s, (void)act;
  no_cuda(op);
#endif
}

// Float elements of the workspace a CUDA launcher needs ('forward' or 'backward').
std::int64_t workspace_elements_of(const std::string& direction, std::int64_t N, std::int64_t T,
                                   std::int64_t F, std::int64_t U) {
  if (direction != "forward" && direction != "backward") {
    throw nb::value_error(("recurrent_cuda_workspace_elements: direction must be 'forward' or "
                           "'backward', got '" + direction + "'")
                              .c_str());
  }
#if FUSEDNN_WITH_CUDA
  return cuda::workspace_elements(direction == "forward" ? cuda::RecurrentKernel::kForward
                                                         : cuda::RecurrentKernel::kBackward,
                                  RecurrentShape{N, T, F, U});
#else
  no_cuda("recurrent_cuda_workspace_elements");
#endif
}

template <typename Real>
void bind_cpu(nb::module_& m) {
  m.def("lstm_forward_cpu", &lstm_forward_cpu<Real>, "x"_a.noconvert(), "h0"_a.noconvert(),
        "c0"_a.noconvert(), "kernel"_a.noconvert(), "recurrent_kernel"_a.noconvert(),
        "bias"_a.noconvert(), "mask"_a.noconvert().none(), "recurrent_mask"_a.noconvert().none(),
        "y"_a.noconvert(), "h_T"_a.noconvert(), "c_T"_a.noconvert(), "gates"_a.noconvert(),
        "cell"_a.noconvert().none(), "h_in"_a.noconvert().none(),
        "LSTM forward over a sequence; cell and h_in (training caches) None for inference.");
  m.def("lstm_backward_cpu", &lstm_backward_cpu<Real>, "x"_a.noconvert(), "c0"_a.noconvert(),
        "kernel"_a.noconvert(), "recurrent_kernel"_a.noconvert(), "mask"_a.noconvert().none(),
        "recurrent_mask"_a.noconvert().none(), "gates"_a.noconvert(), "cell"_a.noconvert(),
        "h_in"_a.noconvert(), "dy"_a.noconvert(), "dh_T"_a.noconvert().none(),
        "dc_T"_a.noconvert().none(), "dx"_a.noconvert(), "dh0"_a.noconvert(),
        "dc0"_a.noconvert(), "dkernel"_a.noconvert(), "drecurrent_kernel"_a.noconvert(),
        "dbias"_a.noconvert(), "dgates"_a.noconvert(),
        "LSTM backward over a sequence from the forward's caches.");
  m.def("gru_forward_cpu", &gru_forward_cpu<Real>, "reset_after"_a, "x"_a.noconvert(),
        "h0"_a.noconvert(), "kernel"_a.noconvert(), "recurrent_kernel"_a.noconvert(),
        "bias"_a.noconvert(), "mask"_a.noconvert().none(), "recurrent_mask"_a.noconvert().none(),
        "y"_a.noconvert(), "h_T"_a.noconvert(), "gates"_a.noconvert(),
        "h_in"_a.noconvert().none(), "h_prev"_a.noconvert().none(),
        "recurrent_h"_a.noconvert().none(),
        "GRU forward over a sequence; h_in, recurrent_h (and h_prev with a recurrent mask) "
        "are the training caches, None for inference.");
  m.def("gru_backward_cpu", &gru_backward_cpu<Real>, "reset_after"_a, "x"_a.noconvert(),
        "kernel"_a.noconvert(), "recurrent_kernel"_a.noconvert(), "mask"_a.noconvert().none(),
        "recurrent_mask"_a.noconvert().none(), "gates"_a.noconvert(), "h_in"_a.noconvert(),
        "h_prev"_a.noconvert().none(), "recurrent_h"_a.noconvert(), "dy"_a.noconvert(),
        "dh_T"_a.noconvert().none(), "dx"_a.noconvert(), "dh0"_a.noconvert(),
        "dkernel"_a.noconvert(), "drecurrent_kernel"_a.noconvert(), "dbias"_a.noconvert(),
        "dgates"_a.noconvert(), "dgates_recurrent"_a.noconvert().none(),
        "GRU backward over a sequence from the forward's caches.");
  m.def("simple_rnn_forward_cpu", &simple_rnn_forward_cpu<Real>, "activation"_a,
        "x"_a.noconvert(), "h0"_a.noconvert(), "kernel"_a.noconvert(),
        "recurrent_kernel"_a.noconvert(), "bias"_a.noconvert(), "mask"_a.noconvert().none(),
        "recurrent_mask"_a.noconvert().none(), "y"_a.noconvert(), "h_T"_a.noconvert(),
        "gates"_a.noconvert(), "h_in"_a.noconvert().none(),
        "Simple RNN forward over a sequence; h_in (training cache) None for inference.");
  m.def("simple_rnn_backward_cpu", &simple_rnn_backward_cpu<Real>, "activation"_a,
        "x"_a.noconvert(), "kernel"_a.noconvert(), "recurrent_kernel"_a.noconvert(),
        "mask"_a.noconvert().none(), "recurrent_mask"_a.noconvert().none(),
        "gates"_a.noconvert(), "h_in"_a.noconvert(), "dy"_a.noconvert(),
        "dh_T"_a.noconvert().none(), "dx"_a.noconvert(), "dh0"_a.noconvert(),
        "dkernel"_a.noconvert(), "drecurrent_kernel"_a.noconvert(), "dbias"_a.noconvert(),
        "dgates"_a.noconvert(), "Simple RNN backward over a sequence from the forward's caches.");
}

}  // namespace

void bind_recurrent(nb::module_& m) {
  bind_cpu<float>(m);
  bind_cpu<double>(m);
  m.def("lstm_forward_cuda", &lstm_forward_cuda, "x"_a.noconvert(), "h0"_a.noconvert(),
        "c0"_a.noconvert(), "kernel"_a.noconvert(), "recurrent_kernel"_a.noconvert(),
        "bias"_a.noconvert(), "mask"_a.noconvert().none(), "recurrent_mask"_a.noconvert().none(),
        "y"_a.noconvert(), "h_T"_a.noconvert(), "c_T"_a.noconvert(), "gates"_a.noconvert(),
        "cell"_a.noconvert().none(), "h_in"_a.noconvert().none(), "workspace"_a.noconvert(),
        "algorithm"_a, "stream"_a,
        "LSTM forward on the GPU; returns the algorithm that ran ('per_step' or 'persistent').");
  m.def("lstm_backward_cuda", &lstm_backward_cuda, "x"_a.noconvert(), "c0"_a.noconvert(),
        "kernel"_a.noconvert(), "recurrent_kernel"_a.noconvert(), "mask"_a.noconvert().none(),
        "recurrent_mask"_a.noconvert().none(), "gates"_a.noconvert(), "cell"_a.noconvert(),
        "h_in"_a.noconvert(), "dy"_a.noconvert(), "dh_T"_a.noconvert().none(),
        "dc_T"_a.noconvert().none(), "dx"_a.noconvert(), "dh0"_a.noconvert(),
        "dc0"_a.noconvert(), "dkernel"_a.noconvert(), "drecurrent_kernel"_a.noconvert(),
        "dbias"_a.noconvert(), "dgates"_a.noconvert(), "workspace"_a.noconvert(), "stream"_a,
        "LSTM backward on the GPU.");
  m.def("gru_forward_cuda", &gru_forward_cuda, "reset_after"_a, "x"_a.noconvert(),
        "h0"_a.noconvert(), "kernel"_a.noconvert(), "recurrent_kernel"_a.noconvert(),
        "bias"_a.noconvert(), "mask"_a.noconvert().none(), "recurrent_mask"_a.noconvert().none(),
        "y"_a.noconvert(), "h_T"_a.noconvert(), "gates"_a.noconvert(),
        "h_in"_a.noconvert().none(), "h_prev"_a.noconvert().none(),
        "recurrent_h"_a.noconvert().none(), "workspace"_a.noconvert(), "algorithm"_a,
        "stream"_a,
        "GRU forward on the GPU; returns the algorithm that ran ('per_step' or 'persistent').");
  m.def("gru_backward_cuda", &gru_backward_cuda, "reset_after"_a, "x"_a.noconvert(),
        "kernel"_a.noconvert(), "recurrent_kernel"_a.noconvert(), "mask"_a.noconvert().none(),
        "recurrent_mask"_a.noconvert().none(), "gates"_a.noconvert(), "h_in"_a.noconvert(),
        "h_prev"_a.noconvert().none(), "recurrent_h"_a.noconvert(), "dy"_a.noconvert(),
        "dh_T"_a.noconvert().none(), "dx"_a.noconvert(), "dh0"_a.noconvert(),
        "dkernel"_a.noconvert(), "drecurrent_kernel"_a.noconvert(), "dbias"_a.noconvert(),
        "dgates"_a.noconvert(), "dgates_recurrent"_a.noconvert().none(),
        "workspace"_a.noconvert(), "stream"_a, "GRU backward on the GPU.");
  m.def("simple_rnn_forward_cuda", &simple_rnn_forward_cuda, "activation"_a, "x"_a.noconvert(),
        "h0"_a.noconvert(), "kernel"_a.noconvert(), "recurrent_kernel"_a.noconvert(),
        "bias"_a.noconvert(), "mask"_a.noconvert().none(), "recurrent_mask"_a.noconvert().none(),
        "y"_a.noconvert(), "h_T"_a.noconvert(), "gates"_a.noconvert(),
        "h_in"_a.noconvert().none(), "workspace"_a.noconvert(), "algorithm"_a, "stream"_a,
        "Simple RNN forward on the GPU; returns the algorithm that ran.");
  m.def("simple_rnn_backward_cuda", &simple_rnn_backward_cuda, "activation"_a,
        "x"_a.noconvert(), "kernel"_a.noconvert(), "recurrent_kernel"_a.noconvert(),
        "mask"_a.noconvert().none(), "recurrent_mask"_a.noconvert().none(),
        "gates"_a.noconvert(), "h_in"_a.noconvert(), "dy"_a.noconvert(),
        "dh_T"_a.noconvert().none(), "dx"_a.noconvert(), "dh0"_a.noconvert(),
        "dkernel"_a.noconvert(), "drecurrent_kernel"_a.noconvert(), "dbias"_a.noconvert(),
        "dgates"_a.noconvert(), "workspace"_a.noconvert(), "stream"_a,
        "Simple RNN backward on the GPU.");
  m.def("recurrent_cuda_workspace_elements", &workspace_elements_of, "direction"_a, "N"_a,
        "T"_a, "F"_a, "U"_a,
        "Float32 elements of the workspace the CUDA recurrent launchers need for one call.");
}

}  // namespace fusednn::bindings
