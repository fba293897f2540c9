// What every file in csrc/bindings/ shares: one bind_<family>(m) per file, and
// the helpers their checks use (shape text, shape expectations, the error for
// a build without CUDA), so that every message reads the same.
#pragma once

#include <nanobind/nanobind.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <stdexcept>
#include <string>

namespace fusednn::bindings {

void bind_info(nanobind::module_& m);
void bind_cross_entropy(nanobind::module_& m);
void bind_optimizers(nanobind::module_& m);
void bind_gemm(nanobind::module_& m);
void bind_recurrent(nanobind::module_& m);
void bind_pooling(nanobind::module_& m);
void bind_conv(nanobind::module_& m);
void bind_dropout(nanobind::module_& m);

// A shape as Python prints a tuple: "(2, 3)", "(4,)", "()".
inline std::string dims_str(const std::int64_t* dims, std::size_t ndim) {
  std::string text = "(";
  for (std::size_t d = 0; d < ndim; ++d) text += (d ? ", " : "") + std::to_string(dims[d]);
  return text + (ndim == 1 ? ",)" : ")");
}

inline std::string dims_str(std::initializer_list<std::int64_t> dims) {
  return dims_str(dims.begin(), dims.size());
}

// The shape of an nb::ndarray, as dims_str writes it.
template <typename A>
std::string shape_str(const A& a) {
  std::array<std::int64_t, 8> dims{};
  const std::size_t ndim = a.ndim() < dims.size() ? a.ndim() : dims.size();
  for (std::size_t d = 0; d < ndim; ++d) dims[d] = static_cast<std::int64_t>(a.shape(d));
  return dims_str(dims.data(), ndim);
}

// ValueError "op: message".
[[noreturn]] inline void fail(const char* op, const std::string& message) {
  throw nanobind::value_error((std::string(op) + ": " + message).c_str());
}

// ValueError unless `a` has exactly the shape `dims`.
template <typename A>
void expect_shape(const char* op, const char* name, const A& a, const std::int64_t* dims,
                  std::size_t ndim) {
  bool same = a.ndim() == ndim;
  for (std::size_t d = 0; same && d < ndim; ++d) {
    same = static_cast<std::int64_t>(a.shape(d)) == dims[d];
  }
  if (!same) {
    fail(op, std::string(name) + " must have shape " + dims_str(dims, ndim) + ", got " +
                 shape_str(a));
  }
}

template <typename A>
void expect_shape(const char* op, const char* name, const A& a,
                  std::initializer_list<std::int64_t> dims) {
  expect_shape(op, name, a, dims.begin(), dims.size());
}

template <typename A, std::size_t Ndim>
void expect_shape(const char* op, const char* name, const A& a,
                  const std::array<std::int64_t, Ndim>& dims) {
  expect_shape(op, name, a, dims.data(), Ndim);
}

// The same for an optional array (None passes).
template <typename A, std::size_t Ndim>
void expect_shape(const char* op, const char* name, const std::optional<A>& a,
                  const std::array<std::int64_t, Ndim>& dims) {
  if (a) expect_shape(op, name, *a, dims);
}

template <typename A>
void expect_shape(const char* op, const char* name, const std::optional<A>& a,
                  std::initializer_list<std::int64_t> dims) {
  if (a) expect_shape(op, name, *a, dims);
}

// The data of an optional array, nullptr for None.
template <typename A>
auto data_or_null(const std::optional<A>& a) -> decltype(a->data()) {
  return a ? a->data() : nullptr;
}

// RuntimeError for a CUDA entry point in a build without CUDA kernels.
[[noreturn]] inline void no_cuda(const char* op) {
  throw std::runtime_error(std::string(op) +
                           ": this fusednn build has no CUDA kernels (built with FUSEDNN_CUDA=OFF "
                           "or without nvcc)");
}

}  // namespace fusednn::bindings
