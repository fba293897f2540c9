// Fused optimizer updates over a list of tensors in one call, in place.
//
// Each update takes parallel arrays of pointers, one entry per parameter
// tensor i < num_tensors; tensor i has sizes[i] elements (P_i) and all of its
// state arrays (gradient, moments) have the same P_i elements. The formulas are
// Keras's (keras/optimizers/adam.py, sgd.py, with decoupled weight decay from
// the base optimizer), so results match Keras step for step.
//
// The CUDA launchers take host arrays of device pointers, pack them into
// kernel-parameter tables (up to kMaxTensorsPerLaunch tensors per launch), and
// queue the launches on `stream` (a cudaStream_t as an integer handle).
#pragma once

#include <cmath>
#include <cstdint>

#include "fusednn/cpu_isa.h"

namespace fusednn {

// Adam / AdamW at step t (t >= 1), bias correction folded into step_size on the host:
//   m += (1 - beta_1) * (g - m)
//   v += (1 - beta_2) * (g * g - v)
//   p -= decay * p                                  (AdamW; decay = 0 for Adam)
//   p -= step_size * m / (sqrt(v) + epsilon)
struct AdamHyperparameters {
  double beta_1;
  double beta_2;
  double epsilon;
  double step_size;  // learning_rate * sqrt(1 - beta_2^t) / (1 - beta_1^t)
  double decay;      // learning_rate * weight_decay
};

inline AdamHyperparameters adam_hyperparameters(double learning_rate, double beta_1, double beta_2,
                                                double epsilon, std::int64_t step,
                                                double weight_decay) {
  const double t = static_cast<double>(step);
  AdamHyperparameters h;
  h.beta_1 = beta_1;
  h.beta_2 = beta_2;
  h.epsilon = epsilon;
  h.step_size = learning_rate * std::sqrt(1.0 - std::pow(beta_2, t)) / (1.0 - std::pow(beta_1, t));
  h.decay = learning_rate * weight_decay;
  return h;
}

// SGD with optional (Nesterov) momentum and decoupled weight decay:
//   p -= decay * p
//   with momentum: m = momentum * m - learning_rate * g
//                  p += nesterov ? momentum * m - learning_rate * g : m
//   without:       p -= learning_rate * g
struct SgdHyperparameters {
  double learning_rate;
  double momentum;
  double decay;  // learning_rate * weight_decay
  bool nesterov;
};

namespace cpu {

FUSEDNN_CPU_KERNELS(

// params   [num_tensors] -> (P_i) parameters, updated
// grads    [num_tensors] -> (P_i) gradients
// ms, vs   [num_tensors] -> (P_i) first and second moments, updated
// sizes    [num_tensors]    P_i
template <typename T>
void adam_update(T* const* params, const T* const* grads, T* const* ms, T* const* vs,
                 const std::int64_t* sizes, std::int64_t num_tensors,
                 const AdamHyperparameters& hyper);

// moments  [num_tensors] -> (P_i) momentum buffers, updated; nullptr for plain SGD
//          (then hyper.momentum is ignored)
template <typename T>
void sgd_update(T* const* params, const T* const* grads, T* const* moments,
                const std::int64_t* sizes, std::int64_t num_tensors,
                const SgdHyperparameters& hyper);
)  // FUSEDNN_CPU_KERNELS

}  // namespace cpu

namespace cuda {

// Tensors per kernel launch: the pointer table travels as a kernel parameter,
// which must stay under 4 KB.
constexpr int kMaxTensorsPerLaunch = 64;

// Same contracts as fusednn::cpu with float32 device pointers in host arrays.
void adam_update(float* const* params, const float* const* grads, float* const* ms,
                 float* const* vs, const std::int64_t* sizes, std::int64_t num_tensors,
                 const AdamHyperparameters& hyper, std::uintptr_t stream);

void sgd_update(float* const* params, const float* const* grads, float* const* moments,
                const std::int64_t* sizes, std::int64_t num_tensors,
                const SgdHyperparameters& hyper, std::uintptr_t stream);

}  // namespace cuda

}  // namespace fusednn
