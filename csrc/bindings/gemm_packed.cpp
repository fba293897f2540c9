// Binding for the GEMM with a packed right operand (PackedMatrix, gemm_packed
// in fusednn/gemm.h), which the recurrent kernels use internally; exposed so
// that it can be tested on its own. One call packs b and multiplies.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <cstdint>
#include <string>

#include "bindings.h"
#include "fusednn/gemm.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace fusednn::bindings {

namespace {

template <typename T>
using Matrix = nb::ndarray<T, nb::ndim<2>, nb::c_contig, nb::device::cpu>;

std::string shape_str(std::size_t rows, std::size_t cols) {
  return "(" + std::to_string(rows) + ", " + std::to_string(cols) + ")";
}

// c = a @ op(b) + beta * c, op(b) = b.T when trans_b.
template <typename T>
void gemm_packed_cpu(Matrix<const T> a, Matrix<const T> b, Matrix<T> c, bool trans_b,
                     double beta) {
  const std::size_t M = a.shape(0), K = a.shape(1);
  const std::size_t Kb = trans_b ? b.shape(1) : b.shape(0);
  const std::size_t N = trans_b ? b.shape(0) : b.shape(1);
  if (Kb != K || c.shape(0) != M || c.shape(1) != N) {
    throw nb::value_error(("gemm_packed: shapes disagree: a " + shape_str(M, K) + ", op(b) " +
                           shape_str(Kb, N) + ", c " + shape_str(c.shape(0), c.shape(1)) +
                           "; expected a (M, K), op(b) (K, N), c (M, N)")
                              .c_str());
  }
  nb::gil_scoped_release release;
  const cpu::PackedMatrix<T> packed(trans_b, std::int64_t(K), std::int64_t(N), b.data(),
                                    std::int64_t(b.shape(1)));
  cpu::gemm_packed<T>(std::int64_t(M), a.data(), std::int64_t(K), packed, T(beta), c.data(),
                      std::int64_t(N));
}

}  // namespace

void bind_gemm_packed(nb::module_& m) {
  constexpr const char* doc =
      "c = a @ op(b) + beta * c with b packed first (the recurrent kernels' per-step GEMM)";
  m.def("gemm_packed", &gemm_packed_cpu<float>, "a"_a.noconvert(), "b"_a.noconvert(),
        "c"_a.noconvert(), "trans_b"_a = false, "beta"_a = 0.0, doc);
  m.def("gemm_packed", &gemm_packed_cpu<double>, "a"_a.noconvert(), "b"_a.noconvert(),
        "c"_a.noconvert(), "trans_b"_a = false, "beta"_a = 0.0, doc);
}

}  // namespace fusednn::bindings
