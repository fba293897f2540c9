// Fused optimizer updates over a list of tensors in one call, in place.
//
// Each update takes parallel arrays of pointers, one entry per parameter
// tensor i < num_tensors; tensor i has sizes[i] elements (P_i) and all of its
// state arrays (gradient, moments) have the same P_i elements. The formulas are
// Keras's (keras/optimizers/adam.py, sgd.py, nadam.py, adamax.py, lion.py, with
// decoupled weight decay from the base optimizer), so results match Keras step
// for step.
//
// The CUDA launchers take host arrays of device pointers, pack them into
// kernel-parameter tables (up to kMaxTensorsPerLaunch tensors per launch), and
// queue the launches on `stream` (a cudaStream_t as an integer handle).
#pragma once

#include <cmath>
#include <cstdint>

#include "fusednn/cpu_isa.h"

namespace fusednn {

// One element's update of the optimizers below is written once, here, and
// called by the CPU kernels (vectorised loops) and the CUDA kernels (registers).
// Always inlined: the CPU kernels are compiled once per instruction set
// (cpu_isa.h), and an out-of-line copy outside fusednn::cpu would hide wider
// code from tests/test_cpu_isa.py's check of the dispatch.
#if defined(__CUDACC__)
#define FUSEDNN_UPDATE_INLINE __host__ __device__ __forceinline__
#else
#define FUSEDNN_UPDATE_INLINE inline __attribute__((always_inline))
#endif

// sign(x) as Keras's ops.sign: -1, 0 or 1, and NaN for NaN (a NaN gradient
// must not turn into a silent zero step).
template <typename T>
FUSEDNN_UPDATE_INLINE T sign_of(T x) {
  return x > T(0) ? T(1) : (x < T(0) ? T(-1) : x);
}

// Nadam at step t (Keras 3 nadam.py). With the momentum cache
// u_s = beta_1 (1 - 0.5 * 0.96^s) and its running product U_t = u_1 u_2 ... u_t:
//   m += (1 - beta_1) * (g - m)
//   v += (1 - beta_2) * (g * g - v)
//   p -= decay * p
//   p -= (momentum_coefficient * m + gradient_coefficient * g)
//        / (sqrt(v / velocity_correction) + epsilon)
// momentum_coefficient = lr u_{t+1} / (1 - U_t u_{t+1})   (Keras's lr u_t_1 / (1 - u_product_t_1)),
// gradient_coefficient = lr (1 - u_t) / (1 - U_t), velocity_correction = 1 - beta_2^t.
template <typename T>
struct NadamCoefficients {
  T one_minus_beta_1, one_minus_beta_2, epsilon;
  T momentum_coefficient, gradient_coefficient, velocity_correction;
  T decay;  // learning_rate * weight_decay
  template <typename U>
  NadamCoefficients<U> as() const {
    return {U(one_minus_beta_1),     U(one_minus_beta_2),     U(epsilon),
            U(momentum_coefficient), U(gradient_coefficient), U(velocity_correction),
            U(decay)};
  }
};

// Keras's u_t, the momentum cache of step t.
inline double nadam_momentum_cache(double beta_1, std::int64_t step) {
  return beta_1 * (1.0 - 0.5 * std::pow(0.96, static_cast<double>(step)));
}

// The coefficients of step t given U_{t-1} (previous_u_product, 1 before the
// first step); *u_product receives U_t, which the caller keeps for step t + 1.
inline NadamCoefficients<double> nadam_coefficients(double learning_rate, double beta_1,
                                                    double beta_2, double epsilon,
                                                    std::int64_t step, double previous_u_product,
                                                    double weight_decay, double* u_product) {
  const double u_t = nadam_momentum_cache(beta_1, step);
  const double u_next = nadam_momentum_cache(beta_1, step + 1);
  const double product = previous_u_product * u_t;
  *u_product = product;
  return {1.0 - beta_1,
          1.0 - beta_2,
          epsilon,
          learning_rate * u_next / (1.0 - product * u_next),
          learning_rate * (1.0 - u_t) / (1.0 - product),
          1.0 - std::pow(beta_2, static_cast<double>(step)),
          learning_rate * weight_decay};
}

template <typename T>
FUSEDNN_UPDATE_INLINE void nadam_element(T& p, T g, T& m, T& v, const NadamCoefficients<T>& c) {
  m += c.one_minus_beta_1 * (g - m);
  v += c.one_minus_beta_2 * (g * g - v);
  p -= c.decay * p;
  p -= (c.momentum_coefficient * m + c.gradient_coefficient * g) /
       (std::sqrt(v / c.velocity_correction) + c.epsilon);
}

// Adamax at step t (Keras 3 adamax.py), the infinity norm u in place of Adam's v:
//   m += (1 - beta_1) * (g - m)
//   u = max(beta_2 * u, |g|)
//   p -= decay * p
//   p -= step_size * m / (u + epsilon),   step_size = lr / (1 - beta_1^t)
template <typename T>
struct AdamaxCoefficients {
  T one_minus_beta_1, beta_2, epsilon, step_size;
  T decay;  // learning_rate * weight_decay
  template <typename U>
  AdamaxCoefficients<U> as() const {
    return {U(one_minus_beta_1), U(beta_2), U(epsilon), U(step_size), U(decay)};
  }
};

inline AdamaxCoefficients<double> adamax_coefficients(double learning_rate, double beta_1,
                                                      double beta_2, double epsilon,
                                                      std::int64_t step, double weight_decay) {
  return {1.0 - beta_1, beta_2, epsilon,
          learning_rate / (1.0 - std::pow(beta_1, static_cast<double>(step))),
          learning_rate * weight_decay};
}

template <typename T>
FUSEDNN_UPDATE_INLINE void adamax_element(T& p, T g, T& m, T& u, const AdamaxCoefficients<T>& c) {
  m += c.one_minus_beta_1 * (g - m);
  const T decayed = c.beta_2 * u, magnitude = g < T(0) ? -g : g;
  u = decayed > magnitude ? decayed : magnitude;  // a NaN gradient reaches u, as in Keras
  p -= c.decay * p;
  p -= c.step_size * m / (u + c.epsilon);
}

// Lion (Keras 3 lion.py):
//   p -= decay * p
//   p -= learning_rate * sign(beta_1 * m + (1 - beta_1) * g)
//   m = beta_2 * m + (1 - beta_2) * g
template <typename T>
struct LionCoefficients {
  T learning_rate, beta_1, beta_2;
  T decay;  // learning_rate * weight_decay
  template <typename U>
  LionCoefficients<U> as() const {
    return {U(learning_rate), U(beta_1), U(beta_2), U(decay)};
  }
};

inline LionCoefficients<double> lion_coefficients(double learning_rate, double beta_1,
                                                  double beta_2, double weight_decay) {
  return {learning_rate, beta_1, beta_2, learning_rate * weight_decay};
}

template <typename T>
FUSEDNN_UPDATE_INLINE void lion_element(T& p, T g, T& m, const LionCoefficients<T>& c) {
  p -= c.decay * p;
  p -= c.learning_rate * sign_of(c.beta_1 * m + (T(1) - c.beta_1) * g);
  m = c.beta_2 * m + (T(1) - c.beta_2) * g;
}

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

// ms, vs: Nadam's first and second moments, updated
template <typename T>
void nadam_update(T* const* params, const T* const* grads, T* const* ms, T* const* vs,
                  const std::int64_t* sizes, std::int64_t num_tensors,
                  const NadamCoefficients<double>& coefficients);

// ms, us: Adamax's first moments and infinity norms, updated
template <typename T>
void adamax_update(T* const* params, const T* const* grads, T* const* ms, T* const* us,
                   const std::int64_t* sizes, std::int64_t num_tensors,
                   const AdamaxCoefficients<double>& coefficients);

// ms: Lion's momentum, updated
template <typename T>
void lion_update(T* const* params, const T* const* grads, T* const* ms,
                 const std::int64_t* sizes, std::int64_t num_tensors,
                 const LionCoefficients<double>& coefficients);
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

void nadam_update(float* const* params, const float* const* grads, float* const* ms,
                  float* const* vs, const std::int64_t* sizes, std::int64_t num_tensors,
                  const NadamCoefficients<double>& coefficients, std::uintptr_t stream);

void adamax_update(float* const* params, const float* const* grads, float* const* ms,
                   float* const* us, const std::int64_t* sizes, std::int64_t num_tensors,
                   const AdamaxCoefficients<double>& coefficients, std::uintptr_t stream);

void lion_update(float* const* params, const float* const* grads, float* const* ms,
                 const std::int64_t* sizes, std::int64_t num_tensors,
                 const LionCoefficients<double>& coefficients, std::uintptr_t stream);

}  // namespace cuda

}  // namespace fusednn
