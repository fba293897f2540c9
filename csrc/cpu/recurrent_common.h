// Pieces shared by the CPU recurrent kernels (recurrent_sequence.h and the
// cells in recurrent_lstm.cpp, recurrent_gru.cpp, recurrent_simple_rnn.cpp):
// vectorisable activations, the team of threads, the whole-sequence GEMMs and
// the handling of masked steps.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#ifdef FUSEDNN_OPENMP
#include <omp.h>
#endif

#include "exp_traits.h"
#include "fusednn/gemm.h"
#include "fusednn/recurrent.h"

FUSEDNN_CPU_BEGIN namespace recurrent_detail {

using Index = std::int64_t;
using fusednn::recurrent_detail::with_flags;

// The activations and per-row helpers are FUSEDNN_INLINE (fusednn/recurrent.h):
// they must be inlined into the `omp simd` loops that call them, or those loops
// stay scalar.

// ---------------------------------------------------------------------------
// Activations. libm's exp/tanh do not vectorise without -ffast-math, and a
// pointwise pass computes five of them per unit and step, so they are inline
// and branch-free here: Cody–Waite reduction x = n ln2 + r (|r| <= ln2/2),
// a Taylor polynomial for exp(r) - 1 (truncation below half an ulp:
// r^8/8! < 6e-9 in float, r^14/14! < 5e-18 in double) and 2^n built in the
// exponent bits. Relative error stays within a few ulp, also near 0.
// Their selects vectorise only where the compiler may evaluate both sides, so
// the files that use them are compiled with -fno-trapping-math (CMakeLists.txt).

// exp(x) - 1 for x <= 0 (-inf gives -1, NaN gives NaN). Written as
// 2^n * q + (2^n - 1) with q = exp(r) - 1, so that it is exact to a few ulp
// of the result even where exp(x) is close to 1.
template <typename Real>
FUSEDNN_INLINE Real expm1_nonpositive(Real x) {
  using E = ExpTraits<Real>;
  using Bits = typename E::Bits;
  const Real shifted = x * E::kLog2e + E::kRoundMagic;
  const Real n = shifted - E::kRoundMagic;
  const Real r = (x - n * E::kLn2Hi) - n * E::kLn2Lo;
  Real poly = E::kInverseFactorials[E::kDegree];
  // Unrolled by hand of the compiler: a loop left inside an `omp simd` body stops it vectorising.
#pragma GCC unroll 16
  for (int k = E::kDegree - 1; k >= 1; --k) poly = poly * r + E::kInverseFactorials[k];
  const Real q = poly * r;
  // The low bits of `shifted` hold n (offset by the magic constant's bits).
  Bits shifted_bits, magic_bits;
  const Real magic = E::kRoundMagic;
  std::memcpy(&shifted_bits, &shifted, sizeof(Real));
  std::memcpy(&magic_bits, &magic, sizeof(Real));
  const Bits scale_bits = (shifted_bits - magic_bits + E::kExponentBias) << E::kMantissaBits;
  Real scale;
  std::memcpy(&scale, &scale_bits, sizeof(Real));
  // Below the bound exp is (sub)normal-small: expm1 = -1.
  constexpr Real kMinArg = sizeof(Real) == 4 ? Real(-87.0f) : Real(-708.0);
  return x < kMinArg ? Real(-1) : scale * q + (scale - Real(1));
}

template <typename Real>
FUSEDNN_INLINE Real sigmoid(Real x) {
  const Real e = expm1_nonpositive(x < Real(0) ? x : -x) + Real(1);  // exp(-|x|)
  const Real s = Real(1) / (Real(1) + e);
  return x < Real(0) ? e * s : s;
}

// tanh(|x|) = -expm1(-2|x|) / (2 + expm1(-2|x|)): no cancellation near 0.
template <typename Real>
FUSEDNN_INLINE Real tanh(Real x) {
  const Real a = x < Real(0) ? x : -x;
  const Real em = expm1_nonpositive(Real(2) * a);
  const Real t = -em / (Real(2) + em);
  return x < Real(0) ? -t : t;
}

template <typename Real>
FUSEDNN_INLINE Real relu(Real x) {
  return x < Real(0) ? Real(0) : x;  // NaN stays NaN (a comparison with NaN is false)
}

// ---------------------------------------------------------------------------
// Threads. column_sums forks only when it has this much work.
constexpr Index kParallelElements = Index(1) << 14;

// Runs body(part, parts) on each thread of a team of `parts` (as many as the
// runtime gives), or as part 0 of 1 on the calling thread. One region serves a
// whole sequence: its steps meet at `#pragma omp barrier` (a no-op on one
// thread), which costs less than a fork and a join for each step's GEMM and
// pointwise pass.
template <typename Body>
inline void in_team(int parts, const Body& body) {
#ifdef FUSEDNN_OPENMP
  if (parts > 1) {
#pragma omp parallel num_threads(parts)
    body(omp_get_thread_num(), omp_get_num_threads());
    return;
  }
#else
  (void)parts;
#endif
  body(0, 1);
}

// ---------------------------------------------------------------------------
// Whole-sequence GEMMs. Rows of every (N, T, .) array are ordered n * T + t.

// out (N*T, gU) = x (N*T, F) x kernel (F, gU)
template <typename Real>
void input_projection(const RecurrentShape& s, Index gate_width, const Real* x,
                      const Real* kernel, Real* out) {
  gemm<Real>(false, false, s.N * s.T, gate_width, s.F, Real(1), x, s.F, kernel, gate_width,
             Real(0), out, gate_width);
}

// dx (N*T, F) = dgates (N*T, gU) x kernel^T (unless dx is nullptr); dkernel (F, gU) = x^T x dgates.
template <typename Real>
void input_gradients(const RecurrentShape& s, Index gate_width, const Real* x, const Real* kernel,
                     const Real* dgates, Real* dx, Real* dkernel) {
  const Index rows = s.N * s.T;
  if (dx != nullptr) {
    gemm<Real>(false, true, rows, s.F, gate_width, Real(1), dgates, gate_width, kernel,
               gate_width, Real(0), dx, s.F);
  }
  gemm<Real>(true, false, s.F, gate_width, rows, Real(1), x, s.F, dgates, gate_width, Real(0),
             dkernel, gate_width);
}

// drecurrent_kernel[:, cols] (U, width) = inputs^T (U, N*T) x dgates[:, cols], where
// `inputs` (N*T, U) fed those gate columns and both gate arrays have row length gU.
template <typename Real>
void recurrent_kernel_gradient(const RecurrentShape& s, Index gate_width, Index width,
                               const Real* inputs, const Real* dgates, Real* drecurrent_kernel) {
  gemm<Real>(true, false, s.U, width, s.N * s.T, Real(1), inputs, s.U, dgates, gate_width,
             Real(0), drecurrent_kernel, gate_width);
}

// out (cols,) = sum over rows of data (rows, cols). Threads own whole column
// chunks, so no partial sums need merging.
template <typename Real>
void column_sums(Index rows, Index cols, const Real* data, Real* out) {
  constexpr Index kChunk = 64;
  const Index chunks = (cols + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (chunks > 1 && rows * cols >= kParallelElements)
  for (Index chunk = 0; chunk < chunks; ++chunk) {
    const Index c0 = chunk * kChunk;
    const Index width = std::min(kChunk, cols - c0);
    Real sums[kChunk] = {};
    for (Index r = 0; r < rows; ++r) {
      const Real* row = data + r * cols + c0;
#pragma omp simd
      for (Index c = 0; c < width; ++c) sums[c] += row[c];
    }
    std::copy(sums, sums + width, out + c0);
  }
}

// ---------------------------------------------------------------------------
// Masks and state carry.

template <bool kMasked>
inline bool step_is_valid(const std::uint8_t* mask, Index T, Index n, Index t) {
  if constexpr (kMasked) {
    return mask[n * T + t] != 0;
  } else {
    (void)mask, (void)T, (void)n, (void)t;
    return true;
  }
}

// Output of a masked step: the previous step's output, zeros before the first.
template <typename Real>
inline void repeat_previous_output(Real* y_nt, Index t, Index U) {
  if (t > 0) {
    std::memcpy(y_nt, y_nt - U, U * sizeof(Real));
  } else {
    std::fill(y_nt, y_nt + U, Real(0));
  }
}

// dst (U,) = h * recurrent_mask (or h): the next recurrent GEMM's input row.
template <typename Real, bool kRecurrentMask>
inline void write_feed(Real* dst, const Real* h, const Real* recurrent_mask_row, Index U) {
  if constexpr (kRecurrentMask) {
#pragma omp simd
    for (Index j = 0; j < U; ++j) dst[j] = h[j] * recurrent_mask_row[j];
  } else {
    (void)recurrent_mask_row;
    std::memcpy(dst, h, U * sizeof(Real));
  }
}

// Where the recurrent GEMM reads h_{t-1} * recurrent_mask from, and the
// next step writes it: the h_in cache in training; in inference a small
// buffer, or h_T itself when there is no recurrent mask.
template <typename Real>
struct Feed {
  std::vector<Real> buffer;
  Real* data = nullptr;
  Index ld = 0;  // distance between rows
  Index step_offset = 0;  // distance between steps (0: one buffer reused)

  Real* step(Index t) const { return data + t * step_offset; }
};

template <typename Real, bool kTraining, bool kRecurrentMask>
Feed<Real> make_feed(const RecurrentShape& s, Real* h_in, Real* h_T) {
  Feed<Real> feed;
  if constexpr (kTraining) {
    feed.data = h_in;
    feed.ld = s.T * s.U;
    feed.step_offset = s.U;
  } else if constexpr (kRecurrentMask) {
    feed.buffer.resize(static_cast<std::size_t>(s.N * s.U));
    feed.data = feed.buffer.data();
    feed.ld = s.U;
  } else {
    feed.data = h_T;
    feed.ld = s.U;
  }
  return feed;
}

// h_T = h0, and step 0's GEMM input from it.
template <typename Real, bool kTraining, bool kRecurrentMask>
void start_state(const RecurrentShape& s, const Real* h0, const Real* recurrent_mask, Real* h_T,
                 const Feed<Real>& feed) {
  std::memcpy(h_T, h0, static_cast<std::size_t>(s.N * s.U) * sizeof(Real));
  if constexpr (kTraining || kRecurrentMask) {
    for (Index n = 0; n < s.N; ++n) {
      write_feed<Real, kRecurrentMask>(feed.step(0) + n * feed.ld, h_T + n * s.U,
                                       kRecurrentMask ? recurrent_mask + n * s.U : nullptr, s.U);
    }
  }
}

// Backward state of one sequence, per batch row:
//   carry (N, U)   the gradient w.r.t. h_t that does not come through the
//                  recurrent GEMM: the cell's direct path (GRU's z*g) after a
//                  valid step, the whole passed-through gradient after a masked one
//   from_gemm (N, U)  dgates_{t+1} x R^T, zero for rows masked at t+1
//   pending_output (N, U)  (masked only) gradient of outputs at masked steps,
//                  owed to the last valid step before them
// so the gradient w.r.t. h_t is carry + from_gemm * recurrent_mask.
template <typename Real>
struct BackwardState {
  std::vector<Real> carry;
  std::vector<Real> from_gemm;
  std::vector<Real> pending_output;

  BackwardState(const RecurrentShape& s, bool masked, const Real* dh_T) {
    const auto size = static_cast<std::size_t>(s.N * s.U);
    carry.assign(size, Real(0));
    from_gemm.assign(size, Real(0));
    if (masked) pending_output.assign(size, Real(0));
    if (dh_T != nullptr) std::copy(dh_T, dh_T + size, carry.begin());
  }
};

// The gradient w.r.t. the state h_t of row n (see BackwardState), into dh (U,).
template <typename Real, bool kRecurrentMask>
inline void state_gradient(const BackwardState<Real>& state, const Real* recurrent_mask, Index n,
                           Index U, Real* dh) {
  const Real* carry = state.carry.data() + n * U;
  const Real* from_gemm = state.from_gemm.data() + n * U;
  if constexpr (kRecurrentMask) {
    const Real* m = recurrent_mask + n * U;
#pragma omp simd
    for (Index j = 0; j < U; ++j) dh[j] = carry[j] + from_gemm[j] * m[j];
  } else {
    (void)recurrent_mask;
#pragma omp simd
    for (Index j = 0; j < U; ++j) dh[j] = carry[j] + from_gemm[j];
  }
}

// A masked step of row n: its output gradient is owed to an earlier step, the
// state gradient passes through, and its gate gradients are zero.
template <typename Real, bool kRecurrentMask>
inline void masked_step_backward(BackwardState<Real>& state, const Real* recurrent_mask,
                                 const Real* dy_nt, Index n, Index U, Real* dgates_nt,
                                 Index gate_width) {
  Real* pending = state.pending_output.data() + n * U;
#pragma omp simd
  for (Index j = 0; j < U; ++j) pending[j] += dy_nt[j];
  state_gradient<Real, kRecurrentMask>(state, recurrent_mask, n, U, state.carry.data() + n * U);
  std::fill(dgates_nt, dgates_nt + gate_width, Real(0));
}

// The total gradient w.r.t. the new h of a valid step of row n, into g (U,):
// its output gradient, outputs owed to it by later masked steps, and the state
// gradient. Clears what it consumed.
template <typename Real, bool kMasked, bool kRecurrentMask>
inline void valid_step_output_gradient(BackwardState<Real>& state, const Real* recurrent_mask,
                                       const Real* dy_nt, Index n, Index U, Real* g) {
  state_gradient<Real, kRecurrentMask>(state, recurrent_mask, n, U, g);
  if constexpr (kMasked) {
    Real* pending = state.pending_output.data() + n * U;
#pragma omp simd
    for (Index j = 0; j < U; ++j) {
      g[j] += dy_nt[j] + pending[j];
      pending[j] = Real(0);
    }
  } else {
#pragma omp simd
    for (Index j = 0; j < U; ++j) g[j] += dy_nt[j];
  }
}

// The per-step recurrent GEMMs have few rows (the batch) and reuse one
// operand, R or R^T, at every step: it is packed once per sequence
// (PackedMatrix) rather than copied, or read with its large row stride, by
// gemm() at every step, and the step's product reads it with no per-call
// packing or blocking decisions (gemm_packed).

// R[:, cols] (U, width) packed: the width columns starting at
// recurrent_kernel_cols, rows gU apart.
template <typename Real>
PackedMatrix<Real> pack_columns(const RecurrentShape& s, Index gate_width, Index width,
                                const Real* recurrent_kernel_cols) {
  return PackedMatrix<Real>(false, s.U, width, recurrent_kernel_cols, gate_width);
}

// R[:, cols]^T (K, U) packed: the K columns starting at recurrent_kernel_cols,
// for the backward products with the gate gradients.
template <typename Real>
PackedMatrix<Real> pack_columns_transposed(const RecurrentShape& s, Index gate_width, Index K,
                                           const Real* recurrent_kernel_cols) {
  return PackedMatrix<Real>(true, K, s.U, recurrent_kernel_cols, gate_width);
}

// dh0 (N, U): the state gradient before step 0.
template <typename Real, bool kRecurrentMask>
void finish_dh0(const RecurrentShape& s, const BackwardState<Real>& state,
                const Real* recurrent_mask, Real* dh0) {
  for (Index n = 0; n < s.N; ++n) {
    state_gradient<Real, kRecurrentMask>(state, recurrent_mask, n, s.U, dh0 + n * s.U);
  }
}

}  // namespace recurrent_detail
FUSEDNN_CPU_END
