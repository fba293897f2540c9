// Fused recurrent sequence kernels: LSTM, GRU and simple RNN over a whole
// sequence, forward and backward (haste's ForwardPass / BackwardPass split).
//
// Shapes (common.h letters): N batch, T time steps, F input features, U units.
// Layouts and gate orders are Keras's:
//   LSTM       kernel (F, 4U), recurrent_kernel (U, 4U), bias (4U,), gates (i, f, c, o)
//              i, f, o = sigmoid(.), g = tanh(.); c' = f*c + i*g; h' = o*tanh(c')
//   GRU        kernel (F, 3U), recurrent_kernel (U, 3U), gates (z, r, h)
//              reset_after:  bias (2, 3U) = [input bias; recurrent bias],
//                            hh = tanh(x Wh + bh_in + r*(h Uh + bh_rec))
//              otherwise:    bias (3U,), hh = tanh(x Wh + (r*h) Uh + bh)
//              h' = z*h + (1-z)*hh
//   SimpleRNN  kernel (F, U), recurrent_kernel (U, U), bias (U,), h' = act(x W + h R + b)
// "gU" below is the gate width: 4U (LSTM), 3U (GRU), U (SimpleRNN).
//
// Forward: the input projection of every step is one GEMM (N*T, F) x (F, gU)
// into `gates`; each step then runs the recurrent GEMM (N, U) x (U, gU) and
// one fused pointwise pass (bias, gate activations, state update, outputs).
// Backward walks the steps once in reverse (pointwise gate gradients, then
// dh_prev = dgates x R^T), and afterwards forms dx, dkernel and
// drecurrent_kernel as single GEMMs over all steps and dbias as a reduction.
//
// Masking (Keras semantics): mask (N, T), nonzero = valid step, or nullptr.
// At a masked step the state is carried over unchanged and y repeats the
// previous output (zeros before the first valid step of a row); masked steps
// receive no gradient and pass the state gradient through unchanged.
// recurrent_mask (N, U) or nullptr: h * recurrent_mask feeds the recurrent
// GEMM (recurrent dropout); the state update itself uses the unmasked h.
//
// Training caches (all batch-major, written by the forward, read by the
// backward; nullptr everywhere selects inference):
//   gates  (N, T, gU)  activated gates of every step (LSTM i, f, g, o;
//                      GRU z, r, hh; SimpleRNN the new h). In inference the
//                      same buffer is the input-projection workspace.
//   h_in   (N, T, U)   the recurrent GEMM's input of every step,
//                      h_{t-1} * recurrent_mask (h_{t-1} when no mask)
// Entries of masked steps in the caches are unspecified.
//
// Outputs are allocated by the caller. The CPU kernels take Real = float or
// double and parallelise the pointwise passes over the batch with OpenMP
// (outside the GEMMs, which are threaded themselves). The CUDA kernels take
// float32 device arrays, a caller-allocated workspace and the stream as an
// integer handle (cudaStream_t), and throw fusednn::CudaError.
#pragma once

#include <cstdint>
#include <type_traits>

namespace fusednn {

// Sizes of one recurrent problem.
struct RecurrentShape {
  std::int64_t N;  // batch
  std::int64_t T;  // time steps, >= 1
  std::int64_t F;  // input features, >= 1
  std::int64_t U;  // units, >= 1
};

enum class RnnActivation { kTanh, kRelu };

namespace recurrent_detail {

// Kernel variants are template parameters (training, masked, ...); the entry
// points turn their runtime flags into them once:
// with_flags(body, training, masked) calls body(std::true_type{}, std::false_type{}).
template <bool... kFlags, typename Body>
void with_flags(const Body& body) {
  body(std::bool_constant<kFlags>{}...);
}

template <bool... kFlags, typename Body, typename... Rest>
void with_flags(const Body& body, bool flag, Rest... rest) {
  if (flag) {
    with_flags<kFlags..., true>(body, rest...);
  } else {
    with_flags<kFlags..., false>(body, rest...);
  }
}

}  // namespace recurrent_detail

namespace cpu {

// x                 (N, T, F)
// h0, c0            (N, U)      initial states
// kernel            (F, 4U)
// recurrent_kernel  (U, 4U)
// bias              (4U,)
// mask              (N, T) or nullptr
// recurrent_mask    (N, U) or nullptr
// y                 (N, T, U)   out: output of every step
// h_T, c_T          (N, U)      out: final states
// gates             (N, T, 4U)  cache (training) or workspace (inference)
// cell              (N, T, U)   cache out or nullptr (inference): c after every step
// h_in              (N, T, U)   cache out or nullptr (inference)
template <typename Real>
void lstm_forward(const RecurrentShape& shape, const Real* x, const Real* h0, const Real* c0,
                  const Real* kernel, const Real* recurrent_kernel, const Real* bias,
                  const std::uint8_t* mask, const Real* recurrent_mask, Real* y, Real* h_T,
                  Real* c_T, Real* gates, Real* cell, Real* h_in);

// x, c0, kernel, recurrent_kernel, mask, recurrent_mask: as given to the forward
// gates, cell, h_in     the forward's caches
// dy                    (N, T, U)   gradient w.r.t. y
// dh_T, dc_T            (N, U)      gradient w.r.t. h_T, c_T, or nullptr (zero)
// dx                    (N, T, F)   out
// dh0, dc0              (N, U)      out
// dkernel               (F, 4U)     out
// drecurrent_kernel     (U, 4U)     out
// dbias                 (4U,)       out
// dgates                (N, T, 4U)  workspace: pre-activation gate gradients
template <typename Real>
void lstm_backward(const RecurrentShape& shape, const Real* x, const Real* c0, const Real* kernel,
                   const Real* recurrent_kernel, const std::uint8_t* mask,
                   const Real* recurrent_mask, const Real* gates, const Real* cell,
                   const Real* h_in, const Real* dy, const Real* dh_T, const Real* dc_T, Real* dx,
                   Real* dh0, Real* dc0, Real* dkernel, Real* drecurrent_kernel, Real* dbias,
                   Real* dgates);

// reset_after       bias layout and candidate formula (see above)
// x                 (N, T, F)
// h0                (N, U)
// kernel            (F, 3U)
// recurrent_kernel  (U, 3U)
// bias              (2, 3U) if reset_after else (3U,)
// mask              (N, T) or nullptr
// recurrent_mask    (N, U) or nullptr
// y                 (N, T, U)   out
// h_T               (N, U)      out
// gates             (N, T, 3U)  cache (training) or workspace (inference)
// h_in              (N, T, U)   cache out or nullptr (inference)
// h_prev            (N, T, U)   cache out or nullptr: the state before every step; needed in
//                               training only with a recurrent_mask (else it equals h_in)
// recurrent_h       (N, T, U)   cache out or nullptr: reset_after: h_in Uh + bh_rec (what r
//                               multiplies); otherwise r * h_in (the candidate GEMM's input)
template <typename Real>
void gru_forward(const RecurrentShape& shape, bool reset_after, const Real* x, const Real* h0,
                 const Real* kernel, const Real* recurrent_kernel, const Real* bias,
                 const std::uint8_t* mask, const Real* recurrent_mask, Real* y, Real* h_T,
                 Real* gates, Real* h_in, Real* h_prev, Real* recurrent_h);

// x, kernel, recurrent_kernel, mask, recurrent_mask: as given to the forward
// gates, h_in, h_prev, recurrent_h: the forward's caches (h_prev nullptr without recurrent_mask)
// dy                    (N, T, U)
// dh_T                  (N, U) or nullptr
// dx                    (N, T, F)   out
// dh0                   (N, U)      out
// dkernel               (F, 3U)     out
// drecurrent_kernel     (U, 3U)     out
// dbias                 (2, 3U) if reset_after else (3U,)   out
// dgates                (N, T, 3U)  workspace: gate gradients w.r.t. the input projection
// dgates_recurrent      (N, T, 3U)  workspace (reset_after only, else nullptr): gate gradients
//                                   w.r.t. the recurrent projection (the h part times r)
template <typename Real>
void gru_backward(const RecurrentShape& shape, bool reset_after, const Real* x,
                  const Real* kernel, const Real* recurrent_kernel, const std::uint8_t* mask,
                  const Real* recurrent_mask, const Real* gates, const Real* h_in,
                  const Real* h_prev, const Real* recurrent_h, const Real* dy, const Real* dh_T,
                  Real* dx, Real* dh0, Real* dkernel, Real* drecurrent_kernel, Real* dbias,
                  Real* dgates, Real* dgates_recurrent);

// activation        tanh or relu
// x                 (N, T, F)
// h0                (N, U)
// kernel            (F, U)
// recurrent_kernel  (U, U)
// bias              (U,)
// mask              (N, T) or nullptr
// recurrent_mask    (N, U) or nullptr
// y                 (N, T, U)   out
// h_T               (N, U)      out
// gates             (N, T, U)   cache (training: the new h of every step) or workspace
// h_in              (N, T, U)   cache out or nullptr (inference)
template <typename Real>
void simple_rnn_forward(const RecurrentShape& shape, RnnActivation activation, const Real* x,
                        const Real* h0, const Real* kernel, const Real* recurrent_kernel,
                        const Real* bias, const std::uint8_t* mask, const Real* recurrent_mask,
                        Real* y, Real* h_T, Real* gates, Real* h_in);

// dy (N, T, U), dh_T (N, U) or nullptr; outputs as for the GRU with U-wide gates;
// dgates (N, T, U) workspace.
template <typename Real>
void simple_rnn_backward(const RecurrentShape& shape, RnnActivation activation, const Real* x,
                         const Real* kernel, const Real* recurrent_kernel,
                         const std::uint8_t* mask, const Real* recurrent_mask, const Real* gates,
                         const Real* h_in, const Real* dy, const Real* dh_T, Real* dx, Real* dh0,
                         Real* dkernel, Real* drecurrent_kernel, Real* dbias, Real* dgates);

}  // namespace cpu

namespace cuda {

// The CUDA launchers below mirror fusednn::cpu (float32 device arrays, same
// arguments and caches) plus a workspace and the stream.
//
// Forward algorithms:
//   kPerStep     per step, the recurrent GEMM (fusednn/cuda_gemm.h) and one fused
//                pointwise kernel: two launches per step.
//   kPersistent  one cooperative kernel for all steps: every block keeps its slice
//                of recurrent_kernel (the gate columns of its units) in shared memory
//                and the steps are separated by grid-wide barriers. LSTM, GRU with
//                reset_after and SimpleRNN, when the slices fit on chip and all
//                blocks can be co-resident (occupancy checked).
//   kAuto        kPersistent where it fits, else kPerStep.
// The backward always runs per step.
enum class RecurrentAlgorithm { kAuto, kPerStep, kPersistent };

const char* algorithm_name(RecurrentAlgorithm algorithm);

// Which launcher a workspace is for.
enum class RecurrentKernel { kForward, kBackward };

// Float elements of `workspace` the launchers need for this shape.
std::int64_t workspace_elements(RecurrentKernel kernel, const RecurrentShape& shape);

// Returns the algorithm that ran (never kAuto). Requesting kPersistent where it
// does not fit throws fusednn::CudaError.
RecurrentAlgorithm lstm_forward(const RecurrentShape& shape, RecurrentAlgorithm requested,
                                const float* x, const float* h0, const float* c0,
                                const float* kernel, const float* recurrent_kernel,
                                const float* bias, const std::uint8_t* mask,
                                const float* recurrent_mask, float* y, float* h_T, float* c_T,
                                float* gates, float* cell, float* h_in, float* workspace,
                                std::uintptr_t stream);

void lstm_backward(const RecurrentShape& shape, const float* x, const float* c0,
                   const float* kernel, const float* recurrent_kernel, const std::uint8_t* mask,
                   const float* recurrent_mask, const float* gates, const float* cell,
                   const float* h_in, const float* dy, const float* dh_T, const float* dc_T,
                   float* dx, float* dh0, float* dc0, float* dkernel, float* drecurrent_kernel,
                   float* dbias, float* dgates, float* workspace, std::uintptr_t stream);

RecurrentAlgorithm gru_forward(const RecurrentShape& shape, RecurrentAlgorithm requested,
                               bool reset_after, const float* x, const float* h0,
                               const float* kernel, const float* recurrent_kernel,
                               const float* bias, const std::uint8_t* mask,
                               const float* recurrent_mask, float* y, float* h_T, float* gates,
                               float* h_in, float* h_prev, float* recurrent_h, float* workspace,
                               std::uintptr_t stream);

void gru_backward(const RecurrentShape& shape, bool reset_after, const float* x,
                  const float* kernel, const float* recurrent_kernel, const std::uint8_t* mask,
                  const float* recurrent_mask, const float* gates, const float* h_in,
                  const float* h_prev, const float* recurrent_h, const float* dy,
                  const float* dh_T, float* dx, float* dh0, float* dkernel,
                  float* drecurrent_kernel, float* dbias, float* dgates, float* dgates_recurrent,
                  float* workspace, std::uintptr_t stream);

RecurrentAlgorithm simple_rnn_forward(const RecurrentShape& shape, RecurrentAlgorithm requested,
                                      RnnActivation activation, const float* x, const float* h0,
                                      const float* kernel, const float* recurrent_kernel,
                                      const float* bias, const std::uint8_t* mask,
                                      const float* recurrent_mask, float* y, float* h_T,
                                      float* gates, float* h_in, float* workspace,
                                      std::uintptr_t stream);

void simple_rnn_backward(const RecurrentShape& shape, RnnActivation activation, const float* x,
                         const float* kernel, const float* recurrent_kernel,
                         const std::uint8_t* mask, const float* recurrent_mask,
                         const float* gates, const float* h_in, const float* dy,
                         const float* dh_T, float* dx, float* dh0, float* dkernel,
                         float* drecurrent_kernel, float* dbias, float* dgates, float* workspace,
                         std::uintptr_t stream);

}  // namespace cuda

}  // namespace fusednn
