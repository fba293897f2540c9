// Bindings for the CPU GEMM (fusednn/gemm.h): single, batched, and with a packed
// right operand (gemm_packed, which the recurrent kernels use internally; bound
// so that it can be tested on its own: one call packs b and multiplies). The caller
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

// ValueError unless op(a) (M, K) @ op(b) (Kb, N) fits c: Kb == K, c (M, N).
template <typename T>
void check_product(const char* op, std::size_t M, std::size_t K, std::size_t Kb, std::size_t N,
                   const Matrix<T>& c) {
  if (Kb != K || c.shape(0) != M || c.shape(1) != N) {
    fail(op, "shapes disagree: op(a) " + dims_str({std::int64_t(M), std::int64_t(K)}) +
                 ", op(b) " + dims_str({std::int64_t(Kb), std::int64_t(N)}) + ", c " +
                 shape_str(c) + "; expected op(a) (M, K), op(b) (K, N), c (M, N)");
  }
}

// c = alpha * op(a) @ op(b) + beta * c, op(x) = x.T when trans_x.
template <typename T>
void gemm_cpu(Matrix<const T> a, Matrix<const T> b, Matrix<T> c, bool trans_a, bool trans_b,
              double alpha, double beta) {
  const std::size_t M = trans_a ? a.shape(1) : a.shape(0);
  const std::size_t K = trans_a ? a.shape(0) : a.shape(1);
  check_product("gemm", M, K, trans_b ? b.shape(1) : b.shape(0),
                trans_b ? b.shape(0) : b.shape(1), c);
  const std::size_t N = c.shape(1);
  nb::gil_scoped_release release;
  cpu::gemm<T>(trans_a, trans_b, std::int64_t(M), std::int64_t(N), std::int64_t(K), T(alpha),
               a.data(), std::int64_t(a.shape(1)), b.data(), std::int64_t(b.shape(1)), T(beta),
               c.data(), std::int64_t(c.shape(1)));
}

template <typename T>
using MatrixBatch = nb::ndarray<T, nb::ndim<3>, nb::c_contig, nb::device::cpu>;

// c[i] = alpha * op(a[i]) @ op(b[i]) + beta * c[i] for i < c.shape[0]; an
// operand with a leading dimension of 1 is the same matrix for every i.
template <typename T>
void gemm_batched_cpu(MatrixBatch<const T> a, MatrixBatch<const T> b, MatrixBatch<T> c,
                      bool trans_a, bool trans_b, double alpha, double beta) {
  const std::size_t batch = c.shape(0);
  const std::size_t M = trans_a ? a.shape(2) : a.shape(1);
  const std::size_t K = trans_a ? a.shape(1) : a.shape(2);
  const std::size_t Kb = trans_b ? b.shape(2) : b.shape(1);
  const std::size_t N = trans_b ? b.shape(1) : b.shape(2);
  const bool batch_ok = (a.shape(0) == batch || a.shape(0) == 1) &&
                        (b.shape(0) == batch || b.shape(0) == 1);
  if (!batch_ok || Kb != K || c.shape(1) != M || c.shape(2) != N) {
    fail("gemm_batched",
         "shapes disagree: " + std::to_string(a.shape(0)) + " x op(a) " +
             dims_str({std::int64_t(M), std::int64_t(K)}) + ", " + std::to_string(b.shape(0)) +
             " x op(b) " + dims_str({std::int64_t(Kb), std::int64_t(N)}) + ", " +
             std::to_string(batch) + " x c " +
             dims_str({std::int64_t(c.shape(1)), std::int64_t(c.shape(2))}) +
             "; expected B or 1 x (M, K), B or 1 x (K, N), B x (M, N)");
  }
  const auto stride = [](const auto& x) {
    return x.shape(0) == 1 ? std::int64_t(0) : std::int64_t(x.shape(1) * x.shape(2));
  };
  nb::gil_scoped_release release;
  cpu::gemm_strided_batched<T>(trans_a, trans_b, std::int64_t(batch), std::int64_t(M),
                               std::int64_t(N), std::int64_t(K), T(alpha), a.data(),
                               std::int64_t(a.shape(2)), stride(a), b.data(),
                               std::int64_t(b.shape(2)), stride(b), T(beta), c.data(),
                               std::int64_t(c.shape(2)), std::int64_t(M * N));
}

// c = a @ op(b) + beta * c with b packed first, op(b) = b.T when trans_b.
template <typename T>
void gemm_packed_cpu(Matrix<const T> a, Matrix<const T> b, Matrix<T> c, bool trans_b,
                     double beta) {
  const std::size_t M = a.shape(0), K = a.shape(1);
  check_product("gemm_packed", M, K, trans_b ? b.shape(1) : b.shape(0),
                trans_b ? b.shape(0) : b.shape(1), c);
  const std::size_t N = c.shape(1);
  nb::gil_scoped_release release;
  const cpu::PackedMatrix<T> packed(trans_b, std::int64_t(K), std::int64_t(N), b.data(),
                                    std::int64_t(b.shape(1)));
  cpu::gemm_packed<T>(std::int64_t(M), a.data(), std::int64_t(K), packed, T(beta), c.data(),
                      std::int64_t(N));
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
  const char* batched_doc =
      "c[i] = alpha * op(a[i]) @ op(b[i]) + beta * c[i] for every i < c.shape[0], on "
      "C-contiguous 3-D arrays of one dtype; an operand with leading dimension 1 is shared.";
  m.def("gemm_batched", &gemm_batched_cpu<float>, "a"_a.noconvert(), "b"_a.noconvert(),
        "c"_a.noconvert(), "trans_a"_a, "trans_b"_a, "alpha"_a, "beta"_a, batched_doc);
  m.def("gemm_batched", &gemm_batched_cpu<double>, "a"_a.noconvert(), "b"_a.noconvert(),
        "c"_a.noconvert(), "trans_a"_a, "trans_b"_a, "alpha"_a, "beta"_a, batched_doc);
  const char* packed_doc =
      "c = a @ op(b) + beta * c with b packed first (the recurrent kernels' per-step GEMM)";
  m.def("gemm_packed", &gemm_packed_cpu<float>, "a"_a.noconvert(), "b"_a.noconvert(),
        "c"_a.noconvert(), "trans_b"_a = false, "beta"_a = 0.0, packed_doc);
  m.def("gemm_packed", &gemm_packed_cpu<double>, "a"_a.noconvert(), "b"_a.noconvert(),
        "c"_a.noconvert(), "trans_b"_a = false, "beta"_a = 0.0, packed_doc);
  m.def("gemm_simd_path", &cpu::gemm_simd_path,
        "The CPU GEMM micro-kernel compiled in: 'avx512', 'avx2', 'vec128' or 'portable'.");
}

}  // namespace fusednn::bindings
