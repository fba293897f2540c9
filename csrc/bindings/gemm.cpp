// Binding for the CPU GEMM (fusednn/gemm.h). The caller
// (python/fusednn/ops/gemm.py) has already validated dtypes, shapes and
// overlap; this layer re-checks the shapes so that a direct call cannot read
// or write out of bounds.
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

// c = alpha * op(a) @ op(b) + beta * c, op(x) = x.T when trans_x.
template <typename T>
void gemm_cpu(Matrix<const T> a, Matrix<const T> b, Matrix<T> c, bool trans_a, bool trans_b,
              double alpha, double beta) {
  const std::size_t M = trans_a ? a.shape(1) : a.shape(0);
  const std::size_t K = trans_a ? a.shape(0) : a.shape(1);
  const std::size_t Kb = trans_b ? b.shape(1) : b.shape(0);
  const std::size_t N = trans_b ? b.shape(0) : b.shape(1);
  if (Kb != K || c.shape(0) != M || c.shape(1) != N) {
    throw nb::value_error(("gemm: shapes disagree: op(a) " + shape_str(M, K) + ", op(b) " +
                           shape_str(Kb, N) + ", c " + shape_str(c.shape(0), c.shape(1)) +
                           "; expected op(a) (M, K), op(b) (K, N), c (M, N)")
                              .c_str());
  }
  nb::gil_scoped_release release;
  cpu::gemm<T>(trans_a, trans_b, std::int64_t(M), std::int64_t(N), std::int64_t(K), T(alpha),
               a.data(), std::int64_t(a.shape(1)), b.data(), std::int64_t(b.shape(1)), T(beta),
               c.data(), std::int64_t(c.shape(1)));
}

}  // namespace

void bind_gemm(nb::module_& m) {
  const char* doc =
      "c = alpha * op(a) @ op(b) + beta * c in place on C-contiguous float32 or float64 "
      "matrices of one dtype; op(x) = x.T when trans_x. beta == 0 never reads c.";
  m.def("gemm", &gemm_cpu<float>, "a"_a.noconvert(), "b"_a.noconvert(), "c"_a.noconvert(),
        "trans_a"_a, "trans_b"_a, "alpha"_a, "beta"_a, doc);
  m.def("gemm", &gemm_cpu<double>, "a"_a.noconvert(), "b"_a.noconvert(), "c"_a.noconvert(),
        "trans_a"_a, "trans_b"_a, "alpha"_a, "beta"_a, doc);
  m.def("gemm_simd_path", &cpu::gemm_simd_path,
        "The CPU GEMM micro-kernel compiled in: 'avx512', 'avx2' or 'portable'.");
}

}  // namespace fusednn::bindings
