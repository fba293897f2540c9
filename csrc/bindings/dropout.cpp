// Bindings for the dropout masks (fusednn/dropout.h). The caller
// (python/fusednn/ops/dropout.py) allocates the mask and has validated the
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
void mask_cpu(nb::ndarray<T, nb::ndim<1>, nb::c_contig, nb::device::cpu> mask, std::uint64_t key,
              double rate) {
  if (!(rate >= 0.0 && rate < 1.0)) {
    fail("dropout_mask", "expected rate in [0, 1), got " + std::to_string(rate));
  }
  const auto n = static_cast<std::int64_t>(mask.shape(0));
  nb::gil_scoped_release release;
  cpu::dropout_mask<T>(mask.data(), n, key, rate);
}

}  // namespace

void bind_dropout(nb::module_& m) {
  const char* doc =
      "Fills mask (n,) with 1 / (1 - rate) where element i is kept, else 0; element i's draw "
      "depends only on (key, i).";
  m.def("dropout_mask_cpu", &mask_cpu<float>, "mask"_a.noconvert(), "key"_a, "rate"_a, doc);
  m.def("dropout_mask_cpu", &mask_cpu<double>, "mask"_a.noconvert(), "key"_a, "rate"_a, doc);
}

}  // namespace fusednn::bindings
