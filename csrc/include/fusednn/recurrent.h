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
// The training cache is ONE buffer of cache_layout(...).elements Reals that
// this side lays out (the caller only asks its size): the forward fills it, the
// backward reads it. Its arrays (all batch-major):
//   gates        (N, T, gU)  activated gates of every step (LSTM i, f, g, o;
//                            GRU z, r, hh; SimpleRNN the new h). In inference the
//                            buffer holds only this array, as the input-projection
//                            workspace.
//   cell         (N, T, U)   LSTM: c after every step
//   h_in         (N, T, U)   the recurrent GEMM's input of every step,
//                            h_{t-1} * recurrent_mask (h_{t-1} when no mask)
//   h_prev       (N, T, U)   GRU with a recurrent_mask: the state before every step
//                            (without one it equals h_in and is absent)
//   recurrent_h  (N, T, U)   GRU: reset_after: h_in Uh + bh_rec (what r multiplies);
//                            otherwise r * h_in (the candidate GEMM's input)
// Masked steps: the backward gives them zero gate gradients but reads the
// neighbouring steps' entries, so the entries are specified as follows
// (tests/test_ops_recurrent.py checks the CPU side):
//   cell         specified: the carried-over state (equal to the previous step's
//                entry, c0 before the first step). The next valid step reads it as c_prev.
//   h_in         specified: h_{t-1} * recurrent_mask with the carried-over state.
//                It enters the dR product (times zero gradients), so must be finite.
//   recurrent_h  reset_before: specified, r * h_in with the masked step's r (finite;
//                it enters the dR product too). reset_after: unspecified.
//   gates        unspecified: partial sums, partly activated (GRU reset_before's
//                z, r); the LSTM's and SimpleRNN's are x W + h R on the CPU and
//                the per-step CUDA path, x W only in the persistent CUDA kernel.
//   h_prev       unspecified.
// The backward's workspace is one buffer of backward_workspace_elements(...)
// Reals as well (the pre-activation gate gradients, and for the GRU with
// reset_after those w.r.t. the recurrent projection).
//
// Outputs, the cache and the workspaces are allocated by the caller and passed
// in the argument structs below, the same for the CPU and the CUDA entry
// points. The CPU kernels take Real = float or double and run each sequence
// in one OpenMP team (csrc/cpu/recurrent_sequence.h). The CUDA kernels take
// float32 device arrays, also a workspace of their own and the stream as an
// integer handle (cudaStream_t), and throw fusednn::CudaError.
#pragma once

#include <cstdint>
#include <type_traits>

#include "fusednn/cpu_isa.h"

namespace fusednn {

// Sizes of one recurrent problem.
struct RecurrentShape {
  std::int64_t N;  // batch
  std::int64_t T;  // time steps, >= 1
  std::int64_t F;  // input features, >= 1
  std::int64_t U;  // units, >= 1
};

enum class RnnActivation { kTanh, kRelu };

enum class RecurrentCell { kLstm, kGru, kSimpleRnn };

// Which recurrence runs.
struct RecurrentSpec {
  RecurrentCell cell = RecurrentCell::kLstm;
  bool reset_after = true;                          // GRU only
  RnnActivation activation = RnnActivation::kTanh;  // SimpleRNN only
};

// gU / U: 4 (LSTM), 3 (GRU), 1 (SimpleRNN).
std::int64_t gate_count(RecurrentCell cell);

// The forward's inputs. The backward reads x, c0 and the masks again.
template <typename Real>
struct RecurrentInputs {
  const Real* x = nullptr;               // (N, T, F)
  const Real* h0 = nullptr;              // (N, U)
  const Real* c0 = nullptr;              // (N, U), LSTM only
  const std::uint8_t* mask = nullptr;    // (N, T) or nullptr
  const Real* recurrent_mask = nullptr;  // (N, U) or nullptr
};

template <typename Real>
struct RecurrentWeights {
  const Real* kernel = nullptr;            // (F, gU)
  const Real* recurrent_kernel = nullptr;  // (U, gU)
  const Real* bias = nullptr;              // (gU,), GRU with reset_after (2, 3U)
};

template <typename Real>
struct RecurrentOutputs {
  Real* y = nullptr;    // (N, T, U)
  Real* h_T = nullptr;  // (N, U)
  Real* c_T = nullptr;  // (N, U), LSTM only
};

// Gradients w.r.t. the outputs; dh_T and dc_T may be nullptr (zero).
template <typename Real>
struct RecurrentOutputGradients {
  const Real* dy = nullptr;    // (N, T, U)
  const Real* dh_T = nullptr;  // (N, U) or nullptr
  const Real* dc_T = nullptr;  // (N, U) or nullptr, LSTM only
};

// Gradients w.r.t. the inputs and weights, in their shapes (dc0 LSTM only).
template <typename Real>
struct RecurrentGradients {
  Real* dx = nullptr;  // nullptr: the input gradient is not computed
  Real* dh0 = nullptr;
  Real* dc0 = nullptr;
  Real* dkernel = nullptr;
  Real* drecurrent_kernel = nullptr;
  Real* dbias = nullptr;
};

// Offsets (in Reals) of the cache's arrays in its buffer; -1 where absent.
struct RecurrentCacheLayout {
  std::int64_t gates = 0, cell = -1, h_in = -1, h_prev = -1, recurrent_h = -1;
  std::int64_t elements = 0;  // the buffer's size
};

RecurrentCacheLayout cache_layout(const RecurrentSpec& spec, const RecurrentShape& shape,
                                  bool training, bool recurrent_masked);

// Reals of the backward's workspace.
std::int64_t backward_workspace_elements(const RecurrentSpec& spec, const RecurrentShape& shape);

// The cache's arrays inside a buffer laid out by cache_layout (nullptr where absent).
template <typename Real>
struct RecurrentCache {
  Real* gates = nullptr;
  Real* cell = nullptr;
  Real* h_in = nullptr;
  Real* h_prev = nullptr;
  Real* recurrent_h = nullptr;

  RecurrentCache(const RecurrentCacheLayout& layout, Real* buffer)
      : gates(at(buffer, layout.gates)),
        cell(at(buffer, layout.cell)),
        h_in(at(buffer, layout.h_in)),
        h_prev(at(buffer, layout.h_prev)),
        recurrent_h(at(buffer, layout.recurrent_h)) {}

 private:
  static Real* at(Real* buffer, std::int64_t offset) {
    return offset < 0 ? nullptr : buffer + offset;
  }
};

// Inlined always, also where the optimizer would not (e.g. the sanitizer build).
#if defined(__GNUC__)
#define FUSEDNN_INLINE inline __attribute__((always_inline))
#else
#define FUSEDNN_INLINE inline
#endif

namespace recurrent_detail {

// Kernel variants are template parameters (training, masked, ...); the entry
// points turn their runtime flags into them once:
// with_flags(body, training, masked) calls body(std::true_type{}, std::false_type{}).
// Always inlined: the CPU kernels are compiled once per instruction set
// (fusednn/cpu_isa.h), and an out-of-line copy compiled for AVX2 or AVX-512
// would be named here, outside that set's namespace, where the check that
// baseline code reaches wider code only through the dispatch
// (tests/test_cpu_isa.py) cannot tell it from baseline code.
template <bool... kFlags, typename Body>
FUSEDNN_INLINE void with_flags(const Body& body) {
  body(std::bool_constant<kFlags>{}...);
}

template <bool... kFlags, typename Body, typename... Rest>
FUSEDNN_INLINE void with_flags(const Body& body, bool flag, Rest... rest) {
  if (flag) {
    with_flags<kFlags..., true>(body, rest...);
  } else {
    with_flags<kFlags..., false>(body, rest...);
  }
}

}  // namespace recurrent_detail

namespace cpu {

FUSEDNN_CPU_KERNELS(

// One forward over the sequence. cache: cache_layout(spec, shape, training,
// recurrent_mask != nullptr).elements Reals (in inference the gates workspace).
template <typename Real>
void recurrent_forward(const RecurrentSpec& spec, const RecurrentShape& shape,
                       const RecurrentInputs<Real>& inputs, const RecurrentWeights<Real>& weights,
                       const RecurrentOutputs<Real>& outputs, bool training, Real* cache);

// The backward from the training forward's cache (inputs and weights as given
// to it; h0 and bias are not read). workspace: backward_workspace_elements Reals.
template <typename Real>
void recurrent_backward(const RecurrentSpec& spec, const RecurrentShape& shape,
                        const RecurrentInputs<Real>& inputs, const RecurrentWeights<Real>& weights,
                        const Real* cache, const RecurrentOutputGradients<Real>& output_gradients,
                        const RecurrentGradients<Real>& gradients, Real* workspace);

)  // FUSEDNN_CPU_KERNELS

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
//   kAuto        kPersistent where it fits and a thread's FMAs per step stay small
//                (recurrent_persistent.cuh, a conservative rule until a GPU measures
//                the threshold), else kPerStep.
// The backward always runs per step.
enum class RecurrentAlgorithm { kAuto, kPerStep, kPersistent };

const char* algorithm_name(RecurrentAlgorithm algorithm);

// Which launcher a workspace is for.
enum class RecurrentKernel { kForward, kBackward };

// Float elements of `workspace` the launchers need for this shape.
std::int64_t workspace_elements(RecurrentKernel kernel, const RecurrentShape& shape);

// The CPU entry points' arguments (float32 device arrays), plus a workspace of
// workspace_elements(...) floats and the stream. The forward returns the
// algorithm that ran (never kAuto); requesting kPersistent where it does not
// fit throws fusednn::CudaError.
RecurrentAlgorithm recurrent_forward(const RecurrentSpec& spec, const RecurrentShape& shape,
                                     RecurrentAlgorithm requested,
                                     const RecurrentInputs<float>& inputs,
                                     const RecurrentWeights<float>& weights,
                                     const RecurrentOutputs<float>& outputs, bool training,
                                     float* cache, float* workspace, std::uintptr_t stream);

void recurrent_backward(const RecurrentSpec& spec, const RecurrentShape& shape,
                        const RecurrentInputs<float>& inputs,
                        const RecurrentWeights<float>& weights, const float* cache,
                        const RecurrentOutputGradients<float>& output_gradients,
                        const RecurrentGradients<float>& gradients, float* backward_workspace,
                        float* workspace, std::uintptr_t stream);

}  // namespace cuda

}  // namespace fusednn
