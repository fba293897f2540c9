// The CPU sequence loops, shared by every cell (as forward_sequence<Cell> in
// csrc/cuda/recurrent_sequence.cuh is on the GPU). A cell policy supplies the
// step's recurrent products and its pointwise passes; the loops here own the
// threads, the masks, the state carry and the GEMM inputs.
//
// Threads: one OpenMP team runs the whole sequence. Each thread computes its
// columns of a step's recurrent product (gemm_packed_columns over
// PackedMatrix::part_columns), all meet at a barrier, each updates its batch
// rows, all meet again. A fork and join per step's GEMM and per pointwise pass
// cost more: the LSTM forward measured 1.28x -> 1.63x torch (inference, N=16,
// U=64, 2 threads) when it moved to this loop.
// Tried and dropped (2026-12-06): splitting each step by units
// instead (a thread's units of every gate, one PackedMatrix per gate, the
// pointwise pass on those units for all rows, ONE barrier per step, inference
// feed double-buffered). Quiet A/B on the 2-core AVX-512 Xeon, medians of
// alternating processes: LSTM N=16 U=256 inference 1.024x the time of this
// loop, forward+backward 1.067x, N=64 U=512 inference 1.020x, the lecture LSTM
// training step 1.043x; GRU and SimpleRNN 1.03-1.07x. The barrier it saves cost
// ~3% of a step; writing the next step's feed into lines the other core had
// just read, and longer barrier waits, cost more. A step is mostly its product.
// Also dropped (2026-12-07): the input projection per step (x_t W packed like R,
// each thread its columns just before the recurrent product, instead of one
// GEMM over all steps), to save writing and re-reading the whole gate array.
// Quiet A/B, medians of 3 alternating processes: LSTM U=256 inference N=64
// F=256 1.022x the time, training 1.026x, N=64 F=1 training 1.046x, N=16
// within 1.04x, N=1 F=256 1.17x, U=512 N=64 1.043x; only U=64 gained (0.88x
// at N=16, 0.95x at N=64).
#pragma once

#include <algorithm>
#include <cstdint>

#include "recurrent_common.h"

FUSEDNN_CPU_BEGIN namespace recurrent_detail {

// One recurrent product of a step: C = beta * C + A x (a cell's packed matrix),
// with the batch's rows of A lda apart and of C ldc apart.
template <typename Real>
struct StepProduct {
  const Real* a;
  Index lda;
  Real beta;
  Real* c;
  Index ldc;
};

// The base of every cell policy below: its sizes, and the hooks a cell does
// not need as no-ops.
template <Index kGateCount, int kProductCount = 1>
struct CellPolicy {
  static constexpr Index kGates = kGateCount;        // gU / U
  static constexpr int kProducts = kProductCount;  // recurrent products per step
  template <typename... Args>
  void between(const Args&...) const {}
  template <typename... Args>
  void carried(const Args&...) const {}
  template <typename... Args>
  void masked(const Args&...) const {}
};

// As many threads as the widest of the cell's products can use.
template <typename Cell>
int team_size(const Cell& cell, Index N) {
  int threads = 1;
  for (int k = 0; k < Cell::kProducts; ++k) {
    threads = std::max(threads, cell.packed(k).useful_threads(N));
  }
  return threads;
}

// Runs body(columns, n0, n1) on each thread of the sequence's team: columns[k]
// its part of product k's columns, [n0, n1) its batch rows.
template <typename Real, typename Cell, typename Body>
void in_sequence_team(const Cell& cell, Index N, const Body& body) {
  in_team(team_size(cell, N), [&](int part, int parts) {
    typename PackedMatrix<Real>::Columns columns[Cell::kProducts];
    for (int k = 0; k < Cell::kProducts; ++k) columns[k] = cell.packed(k).part_columns(part, parts);
    body(columns, N * part / parts, N * (part + 1) / parts);
  });
}

// Product k of a step on this thread's columns, then the barrier after which
// every thread may read all of C.
template <typename Real, typename Cell>
inline void run_product(const Cell& cell, int k, const StepProduct<Real>& p, Index N,
                        typename PackedMatrix<Real>::Columns columns) {
  gemm_packed_columns<Real>(N, p.a, p.lda, cell.packed(k), p.beta, p.c, p.ldc, columns);
#pragma omp barrier
}

// Forward cell policy (a CellPolicy; Real, kTraining fixed by its type):
//   packed(k)                       product k's packed columns of recurrent_kernel
//   product(k, t, feed_t, feed_ld)  product k of step t (feed_t: h_{t-1} * recurrent_mask)
//   between(k, t, n, feed_row)      row n's pass after product k < kProducts - 1
//   update(t, n, h, y_nt)           a valid step of row n: h (U,) becomes the new state,
//                                   y_nt the output
//   carried(t, n)                   every row after its update or carry-over
template <typename Real, bool kTraining, bool kMasked, bool kRecurrentMask, typename Cell>
void forward_sequence(const RecurrentShape& s, const RecurrentInputs<Real>& in,
                      const Real* kernel, const RecurrentOutputs<Real>& out, Real* gates,
                      Real* h_in, Cell& cell) {
  const Index N = s.N, T = s.T, U = s.U;
  input_projection(s, Cell::kGates * U, in.x, kernel, gates);
  const Feed<Real> feed = make_feed<Real, kTraining, kRecurrentMask>(s, h_in, out.h_T);
  start_state<Real, kTraining, kRecurrentMask>(s, in.h0, in.recurrent_mask, out.h_T, feed);

  in_sequence_team<Real>(cell, N, [&](const auto& columns, Index n0, Index n1) {
    for (Index t = 0; t < T; ++t) {
      const Real* feed_t = feed.step(t);
      for (int k = 0; k < Cell::kProducts; ++k) {
        run_product(cell, k, cell.product(k, t, feed_t, feed.ld), N, columns[k]);
        if (k + 1 < Cell::kProducts) {
          for (Index n = n0; n < n1; ++n) cell.between(k, t, n, feed_t + n * feed.ld);
#pragma omp barrier
        }
      }
      // In training the last step has no next GEMM input to write.
      Real* next_feed = kTraining ? (t + 1 < T ? feed.step(t + 1) : nullptr) : feed.step(0);
      for (Index n = n0; n < n1; ++n) {
        Real* h = out.h_T + n * U;
        Real* y_nt = out.y + (n * T + t) * U;
        if (step_is_valid<kMasked>(in.mask, T, n, t)) {
          cell.update(t, n, h, y_nt);
        } else {
          repeat_previous_output(y_nt, t, U);
        }
        cell.carried(t, n);
        if ((kTraining || kRecurrentMask) && next_feed != nullptr) {
          write_feed<Real, kRecurrentMask>(next_feed + n * feed.ld, h,
                                           kRecurrentMask ? in.recurrent_mask + n * U : nullptr,
                                           U);
        }
      }
#pragma omp barrier
    }
  });
}

// Backward cell policy (a CellPolicy):
//   packed(k)                     as for the forward, transposed: R[:, cols]^T
//   product(k, t, state)          product k of step t (into state.from_gemm or the cell's own)
//   between(k, t, n, valid, state)  row n's pass after product k < kProducts - 1
//   update(t, n, g)               a valid step of row n: g (U,) holds the total gradient
//                                 w.r.t. the new h; writes the step's gate gradients and
//                                 leaves in g what reaches h_{t-1} outside the products
//   masked(t, n)                  a masked step of row n (its dgates row is already zero)
// Leaves dh0 and dx, dkernel; the cell adds its recurrent_kernel and bias gradients.
template <typename Real, bool kMasked, bool kRecurrentMask, typename Cell>
void backward_sequence(const RecurrentShape& s, const RecurrentInputs<Real>& in,
                       const Real* kernel, const Real* dy, const Real* dh_T,
                       const RecurrentGradients<Real>& grads, Real* dgates, Cell& cell) {
  const Index N = s.N, T = s.T, U = s.U, G = Cell::kGates * U;
  BackwardState<Real> state(s, kMasked, dh_T);

  in_sequence_team<Real>(cell, N, [&](const auto& columns, Index n0, Index n1) {
    for (Index t = T - 1; t >= 0; --t) {
      for (Index n = n0; n < n1; ++n) {
        const Index nt = n * T + t;
        const Real* dy_nt = dy + nt * U;
        if (!step_is_valid<kMasked>(in.mask, T, n, t)) {
          masked_step_backward<Real, kRecurrentMask>(state, in.recurrent_mask, dy_nt, n, U,
                                                     dgates + nt * G, G);
          cell.masked(t, n);
          continue;
        }
        Real* g = state.carry.data() + n * U;
        valid_step_output_gradient<Real, kMasked, kRecurrentMask>(state, in.recurrent_mask,
                                                                 dy_nt, n, U, g);
        cell.update(t, n, g);
      }
#pragma omp barrier
      for (int k = 0; k < Cell::kProducts; ++k) {
        run_product(cell, k, cell.product(k, t, state), N, columns[k]);
        if (k + 1 < Cell::kProducts) {
          for (Index n = n0; n < n1; ++n) {
            cell.between(k, t, n, step_is_valid<kMasked>(in.mask, T, n, t), state);
          }
#pragma omp barrier
        }
      }
    }
  });

  finish_dh0<Real, kRecurrentMask>(s, state, in.recurrent_mask, grads.dh0);
  input_gradients(s, G, in.x, kernel, dgates, grads.dx, grads.dkernel);
}

}  // namespace recurrent_detail
FUSEDNN_CPU_END
