// Bindings for the dropout masks and products (fusednn/dropout.h). The caller
// (python/fusednn/ops/dropout.py) allocates the output and has validated the
// rate; it is checked again here so that a direct call cannot divide by zero.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <cstdint>
#include <string>

#include "bindings.h"
#include "fusednn/dropout.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace fusednn::bindings {

namespace {

template <typename T>
using Vector = nb::ndarray<T, nb::ndim<1>, nb::c_contig, nb::device::cpu>;

void check_rate(const char* op, double rate) {
  if (!(rate >= 0.0 && rate < 1.0)) {
    fail(op, "expected rate in [0, 1), got " + std::to_string(rate));
  }
}

template <typename T>
void mask_cpu(Vector<T> mask, std::uint64_t key, double rate) {
  check_rate("dropout_mask", rate);
  const auto n = static_cast<std::int64_t>(mask.shape(0));
  nb::gil_scoped_release release;
  cpu::dropout_mask<T>(mask.data(), n, key, rate);
}

template <typename T>
void times_mask_cpu(Vector<const T> x, Vector<T> out, std::uint64_t key, double rate) {
  const char* op = "dropout";
  check_rate(op, rate);
  if (x.shape(0) != out.shape(0)) {
    fail(op, "expected out of x's size " + std::to_string(x.shape(0)) + ", got " +
                 std::to_string(out.shape(0)));
  }
  const auto n = static_cast<std::int64_t>(x.shape(0));
  nb::gil_scoped_release release;
  cpu::dropout_times_mask<T>(x.data(), out.data(), n, key, rate);
}

}  // namespace

void bind_dropout(nb::module_& m) {
  const char* doc =
      "Fills mask (n,) with 1 / (1 - rate) where element i is kept, else 0; element i's draw "
      "depends only on (key, i).";
  m.def("dropout_mask_cpu", &mask_cpu<float>, "mask"_a.noconvert(), "key"_a, "rate"_a, doc);
  m.def("dropout_mask_cpu", &mask_cpu<double>, "mask"_a.noconvert(), "key"_a, "rate"_a, doc);
  const char* times_doc =
      "out (n,) = x (n,) times the mask dropout_mask_cpu fills for (key, rate), in one pass.";
  m.def("dropout_cpu", &times_mask_cpu<float>, "x"_a.noconvert(), "out"_a.noconvert(), "key"_a,
        "rate"_a, times_doc);
  m.def("dropout_cpu", &times_mask_cpu<double>, "x"_a.noconvert(), "out"_a.noconvert(),
        "key"_a, "rate"_a, times_doc);
}

}  // namespace fusednn::bindings
