// Bindings for the fused recurrent kernels (fusednn/recurrent.h). The caller
// (python/fusednn/ops/recurrent.py) validates everything and allocates outputs,
// caches and workspaces; this layer re-checks every shape so that a direct call
// cannot read or write out of bounds, then releases the GIL and calls one
// launcher. Optional arrays (masks, training caches, dh_T) are None or arrays.
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
void expect(const char* op, const char* name, const A& a, std::initializer_list<std::int64_t> dims) {
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
    throw nb::value_error((std::string(op) + ": " + name + (wanted ? " is required " : " must be None ") +
                           when)
                              .c_str());
  }
}

RnnActivation activation_of(const char* op, const std::string& name) {
  if (name == "tanh") return RnnActivation::kTanh;
  if (name == "relu") return RnnActivation::kRelu;
  throw nb::value_error((std::string(op) + ": activation must be 'tanh' or 'relu', got '" + name + "'").c_str());
}

void expect_training_caches(const char* op, bool any, bool all) {
  if (any && !all) {
    throw nb::value_error(
        (std::string(op) + ": the training caches must be given all together or not at all").c_str());
  }
}

// ---------------------------------------------------------------------------
// LSTM

template <typename Real>
void lstm_forward_cpu(Array<const Real, nb::device::cpu, 3> x,
                      Array<const Real, nb::device::cpu, 2> h0,
                      Array<const Real, nb::device::cpu, 2> c0,
                      Array<const Real, nb::device::cpu, 2> kernel,
                      Array<const Real, nb::device::cpu, 2> recurrent_kernel,
                      Array<const Real, nb::device::cpu, 1> bias,
                      Optional<const std::uint8_t, nb::device::cpu, 2> mask,
                      Optional<const Real, nb::device::cpu, 2> recurrent_mask,
                      Array<Real, nb::device::cpu, 3> y, Array<Real, nb::device::cpu, 2> h_T,
                      Array<Real, nb::device::cpu, 2> c_T, Array<Real, nb::device::cpu, 3> gates,
                      Optional<Real, nb::device::cpu, 3> cell,
                      Optional<Real, nb::device::cpu, 3> h_in) {
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
  nb::gil_scoped_release release;
  cpu::lstm_forward<Real>(s, x.data(), h0.data(), c0.data(), kernel.data(),
                          recurrent_kernel.data(), bias.data(), data_or_null(mask),
                          data_or_null(recurrent_mask), y.data(), h_T.data(), c_T.data(),
                          gates.data(), data_or_null(cell), data_or_null(h_in));
}

template <typename Real>
void lstm_backward_cpu(Array<const Real, nb::device::cpu, 3> x,
                       Array<const Real, nb::device::cpu, 2> c0,
                       Array<const Real, nb::device::cpu, 2> kernel,
                       Array<const Real, nb::device::cpu, 2> recurrent_kernel,
                       Optional<const std::uint8_t, nb::device::cpu, 2> mask,
                       Optional<const Real, nb::device::cpu, 2> recurrent_mask,
                       Array<const Real, nb::device::cpu, 3> gates,
                       Array<const Real, nb::device::cpu, 3> cell,
                       Array<const Real, nb::device::cpu, 3> h_in,
                       Array<const Real, nb::device::cpu, 3> dy,
                       Optional<const Real, nb::device::cpu, 2> dh_T,
                       Optional<const Real, nb::device::cpu, 2> dc_T,
                       Array<Real, nb::device::cpu, 3> dx, Array<Real, nb::device::cpu, 2> dh0,
                       Array<Real, nb::device::cpu, 2> dc0,
                       Array<Real, nb::device::cpu, 2> dkernel,
                       Array<Real, nb::device::cpu, 2> drecurrent_kernel,
                       Array<Real, nb::device::cpu, 1> dbias,
                       Array<Real, nb::device::cpu, 3> dgates) {
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
  nb::gil_scoped_release release;
  cpu::lstm_backward<Real>(s, x.data(), c0.data(), kernel.data(), recurrent_kernel.data(),
                           data_or_null(mask), data_or_null(recurrent_mask),
                           gates.data(), cell.data(), h_in.data(), dy.data(),
                           data_or_null(dh_T), data_or_null(dc_T), dx.data(),
                           dh0.data(), dc0.data(), dkernel.data(), drecurrent_kernel.data(),
                           dbias.data(), dgates.data());
}

// ---------------------------------------------------------------------------
// GRU (bias and dbias flattened: (2, 3U) -> (6U,) when reset_after, else (3U,))

template <typename Real>
void gru_forward_cpu(bool reset_after, Array<const Real, nb::device::cpu, 3> x,
                     Array<const Real, nb::device::cpu, 2> h0,
                     Array<const Real, nb::device::cpu, 2> kernel,
                     Array<const Real, nb::device::cpu, 2> recurrent_kernel,
                     Array<const Real, nb::device::cpu, 1> bias,
                     Optional<const std::uint8_t, nb::device::cpu, 2> mask,
                     Optional<const Real, nb::device::cpu, 2> recurrent_mask,
                     Array<Real, nb::device::cpu, 3> y, Array<Real, nb::device::cpu, 2> h_T,
                     Array<Real, nb::device::cpu, 3> gates,
                     Optional<Real, nb::device::cpu, 3> h_in,
                     Optional<Real, nb::device::cpu, 3> h_prev,
                     Optional<Real, nb::device::cpu, 3> recurrent_h) {
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
  nb::gil_scoped_release release;
  cpu::gru_forward<Real>(s, reset_after, x.data(), h0.data(), kernel.data(),
                         recurrent_kernel.data(), bias.data(), data_or_null(mask),
                         data_or_null(recurrent_mask), y.data(), h_T.data(), gates.data(),
                         data_or_null(h_in), data_or_null(h_prev), data_or_null(recurrent_h));
}

template <typename Real>
void gru_backward_cpu(bool reset_after, Array<const Real, nb::device::cpu, 3> x,
                      Array<const Real, nb::device::cpu, 2> kernel,
                      Array<const Real, nb::device::cpu, 2> recurrent_kernel,
                      Optional<const std::uint8_t, nb::device::cpu, 2> mask,
                      Optional<const Real, nb::device::cpu, 2> recurrent_mask,
                      Array<const Real, nb::device::cpu, 3> gates,
                      Array<const Real, nb::device::cpu, 3> h_in,
                      Optional<const Real, nb::device::cpu, 3> h_prev,
                      Array<const Real, nb::device::cpu, 3> recurrent_h,
                      Array<const Real, nb::device::cpu, 3> dy,
                      Optional<const Real, nb::device::cpu, 2> dh_T,
                      Array<Real, nb::device::cpu, 3> dx, Array<Real, nb::device::cpu, 2> dh0,
                      Array<Real, nb::device::cpu, 2> dkernel,
                      Array<Real, nb::device::cpu, 2> drecurrent_kernel,
                      Array<Real, nb::device::cpu, 1> dbias,
                      Array<Real, nb::device::cpu, 3> dgates,
                      Optional<Real, nb::device::cpu, 3> dgates_recurrent) {
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
  nb::gil_scoped_release release;
  cpu::gru_backward<Real>(s, reset_after, x.data(), kernel.data(), recurrent_kernel.data(),
                          data_or_null(mask), data_or_null(recurrent_mask), gates.data(),
                          h_in.data(), data_or_null(h_prev), recurrent_h.data(), dy.data(),
                          data_or_null(dh_T), dx.data(), dh0.data(), dkernel.data(),
                          drecurrent_kernel.data(), dbias.data(), dgates.data(),
                          data_or_null(dgates_recurrent));
}

// ---------------------------------------------------------------------------
// SimpleRNN

template <typename Real>
void simple_rnn_forward_cpu(const std::string& activation, Array<const Real, nb::device::cpu, 3> x,
                            Array<const Real, nb::device::cpu, 2> h0,
                            Array<const Real, nb::device::cpu, 2> kernel,
                            Array<const Real, nb::device::cpu, 2> recurrent_kernel,
                            Array<const Real, nb::device::cpu, 1> bias,
                            Optional<const std::uint8_t, nb::device::cpu, 2> mask,
                            Optional<const Real, nb::device::cpu, 2> recurrent_mask,
                            Array<Real, nb::device::cpu, 3> y, Array<Real, nb::device::cpu, 2> h_T,
                            Array<Real, nb::device::cpu, 3> gates,
                            Optional<Real, nb::device::cpu, 3> h_in) {
  const char* op = "simple_rnn_forward";
  const RnnActivation act = activation_of(op, activation);
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
  nb::gil_scoped_release release;
  cpu::simple_rnn_forward<Real>(s, act, x.data(), h0.data(), kernel.data(),
                                recurrent_kernel.data(), bias.data(), data_or_null(mask),
                                data_or_null(recurrent_mask), y.data(), h_T.data(), gates.data(),
                                data_or_null(h_in));
}

template <typename Real>
void simple_rnn_backward_cpu(const std::string& activation,
                             Array<const Real, nb::device::cpu, 3> x,
                             Array<const Real, nb::device::cpu, 2> kernel,
                             Array<const Real, nb::device::cpu, 2> recurrent_kernel,
                             Optional<const std::uint8_t, nb::device::cpu, 2> mask,
                             Optional<const Real, nb::device::cpu, 2> recurrent_mask,
                             Array<const Real, nb::device::cpu, 3> gates,
                             Array<const Real, nb::device::cpu, 3> h_in,
                             Array<const Real, nb::device::cpu, 3> dy,
                             Optional<const Real, nb::device::cpu, 2> dh_T,
                             Array<Real, nb::device::cpu, 3> dx,
                             Array<Real, nb::device::cpu, 2> dh0,
                             Array<Real, nb::device::cpu, 2> dkernel,
                             Array<Real, nb::device::cpu, 2> drecurrent_kernel,
                             Array<Real, nb::device::cpu, 1> dbias,
                             Array<Real, nb::device::cpu, 3> dgates) {
  const char* op = "simple_rnn_backward";
  const RnnActivation act = activation_of(op, activation);
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
  nb::gil_scoped_release release;
  cpu::simple_rnn_backward<Real>(s, act, x.data(), kernel.data(), recurrent_kernel.data(),
                                 data_or_null(mask), data_or_null(recurrent_mask), gates.data(),
                                 h_in.data(), dy.data(), data_or_null(dh_T), dx.data(),
                                 dh0.data(), dkernel.data(), drecurrent_kernel.data(),
                                 dbias.data(), dgates.data());
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
}

}  // namespace fusednn::bindings
