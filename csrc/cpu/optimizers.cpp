// Fused optimizer updates on the CPU: every tensor of the list is cut into
// fixed-size chunks, and one OpenMP loop runs over all chunks of all tensors,
// so small tensors (biases) and large ones (kernels) share the threads evenly.
// Each chunk is one vectorised sweep that reads and writes every array once.
// Adam's std::sqrt vectorises because the library is built with
// -fno-math-errno (CMakeLists.txt); with errno to set it stays scalar, ~6x slower.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "fusednn/optimizers.h"

FUSEDNN_CPU_BEGIN

namespace {

// Elements per chunk: big enough that a chunk amortises scheduling, small
// enough that a 1M-parameter list still splits across the cores.
constexpr std::int64_t kChunkElements = 1 << 14;
// Below this many elements in total one thread does all the work.
constexpr std::int64_t kParallelElements = 1 << 15;

struct Chunk {
  std::int64_t tensor;
  std::int64_t begin;
  std::int64_t end;
};

std::vector<Chunk> split_into_chunks(const std::int64_t* sizes, std::int64_t num_tensors,
                                     std::int64_t* total_elements) {
  std::vector<Chunk> chunks;
  *total_elements = 0;
  for (std::int64_t i = 0; i < num_tensors; ++i) {
    for (std::int64_t begin = 0; begin < sizes[i]; begin += kChunkElements) {
      chunks.push_back({i, begin, std::min(begin + kChunkElements, sizes[i])});
    }
    *total_elements += sizes[i];
  }
  return chunks;
}

// Elements before the first cache-line boundary of `p`, done as scalars:
// large NumPy arrays start 16 bytes past one (malloc's header), and the other
// arrays usually share p's offset, so the vector loads then stop straddling
// cache lines (17% faster on a 10M-parameter Adam step).
template <typename T>
std::int64_t elements_to_alignment(const T* p, std::int64_t n) {
  constexpr std::uintptr_t kLineBytes = 64;
  const auto misalignment = reinterpret_cast<std::uintptr_t>(p) % kLineBytes;
  const auto peel = misalignment == 0 || misalignment % sizeof(T) != 0
                        ? 0
                        : static_cast<std::int64_t>((kLineBytes - misalignment) / sizeof(T));
  return std::min(peel, n);
}

// update(i) for every i < n: scalar up to p's first cache-line boundary, then
// in one vectorised loop.
template <typename T, typename Update>
inline void sweep(const T* p, std::int64_t n, const Update& update) {
  const std::int64_t peel = elements_to_alignment(p, n);
  for (std::int64_t i = 0; i < peel; ++i) update(i);
#pragma omp simd
  for (std::int64_t i = peel; i < n; ++i) update(i);
}

template <typename T>
void adam_chunk(T* __restrict p, const T* __restrict g, T* __restrict m, T* __restrict v,
                std::int64_t n, const AdamHyperparameters& h) {
  const T one_minus_beta_1 = T(1.0 - h.beta_1), one_minus_beta_2 = T(1.0 - h.beta_2);
  const T epsilon = T(h.epsilon), step_size = T(h.step_size), decay = T(h.decay);
  const auto update = [&](std::int64_t i) {
    const T gi = g[i];
    const T mi = m[i] + one_minus_beta_1 * (gi - m[i]);
    const T vi = v[i] + one_minus_beta_2 * (gi * gi - v[i]);
    const T pi = p[i] - decay * p[i];
    p[i] = pi - step_size * mi / (std::sqrt(vi) + epsilon);
    m[i] = mi;
    v[i] = vi;
  };
  sweep(p, n, update);
}

template <typename T, bool kMomentum, bool kNesterov>
void sgd_chunk(T* __restrict p, const T* __restrict g, T* __restrict m, std::int64_t n,
               const SgdHyperparameters& h) {
  const T learning_rate = T(h.learning_rate);
  const T momentum = T(h.momentum);
  const T decay = T(h.decay);
  const auto update = [&](std::int64_t i) {
    const T step = learning_rate * g[i];
    T pi = p[i] - decay * p[i];
    if constexpr (kMomentum) {
      const T mi = momentum * m[i] - step;
      m[i] = mi;
      pi += kNesterov ? momentum * mi - step : mi;
    } else {
      pi -= step;
    }
    p[i] = pi;
  };
  sweep(p, n, update);
}

// update(tensor, begin, count) for every chunk of every tensor, the chunks
// shared among the OpenMP threads.
template <typename ChunkUpdate>
void for_each_chunk(const std::int64_t* sizes, std::int64_t num_tensors,
                    const ChunkUpdate& update) {
  std::int64_t total_elements;
  const std::vector<Chunk> chunks = split_into_chunks(sizes, num_tensors, &total_elements);
  const auto num_chunks = static_cast<std::int64_t>(chunks.size());
#pragma omp parallel for schedule(static) if (total_elements >= kParallelElements)
  for (std::int64_t k = 0; k < num_chunks; ++k) {
    const Chunk& c = chunks[k];
    update(c.tensor, c.begin, c.end - c.begin);
  }
}

template <typename T, bool kMomentum, bool kNesterov>
void sgd_all(T* const* params, const T* const* grads, T* const* moments,
             const std::int64_t* sizes, std::int64_t num_tensors, const SgdHyperparameters& h) {
  for_each_chunk(sizes, num_tensors, [&](std::int64_t i, std::int64_t begin, std::int64_t n) {
    T* m = kMomentum ? moments[i] + begin : nullptr;
    sgd_chunk<T, kMomentum, kNesterov>(params[i] + begin, grads[i] + begin, m, n, h);
  });
}

// element(p[j], g[j], state[j]...) for j < n in one vectorised sweep.
template <typename T, typename Element, typename... State>
inline void sweep_elements(T* __restrict p, const T* __restrict g, std::int64_t n,
                           const Element& element, State* __restrict... state) {
  sweep(p, n, [&](std::int64_t j) { element(p[j], g[j], state[j]...); });
}

// The same for every element of every tensor; `state` are the state arrays'
// pointer lists (ms, vs, ...), parallel to params.
template <typename T, typename Element, typename... State>
void update_elements(T* const* params, const T* const* grads, const std::int64_t* sizes,
                     std::int64_t num_tensors, const Element& element, State* const*... state) {
  for_each_chunk(sizes, num_tensors, [&](std::int64_t i, std::int64_t begin, std::int64_t n) {
    sweep_elements(params[i] + begin, grads[i] + begin, n, element, (state[i] + begin)...);
  });
}

}  // namespace

template <typename T>
void adam_update(T* const* params, const T* const* grads, T* const* ms, T* const* vs,
                 const std::int64_t* sizes, std::int64_t num_tensors,
                 const AdamHyperparameters& hyper) {
  FUSEDNN_DISPATCH(adam_update<T>(params, grads, ms, vs, sizes, num_tensors, hyper));
  for_each_chunk(sizes, num_tensors, [&](std::int64_t i, std::int64_t begin, std::int64_t n) {
    adam_chunk(params[i] + begin, grads[i] + begin, ms[i] + begin, vs[i] + begin, n, hyper);
  });
}

template <typename T>
void sgd_update(T* const* params, const T* const* grads, T* const* moments,
                const std::int64_t* sizes, std::int64_t num_tensors,
                const SgdHyperparameters& hyper) {
  FUSEDNN_DISPATCH(sgd_update<T>(params, grads, moments, sizes, num_tensors, hyper));
  if (moments == nullptr) {
    sgd_all<T, false, false>(params, grads, moments, sizes, num_tensors, hyper);
  } else if (hyper.nesterov) {
    sgd_all<T, true, true>(params, grads, moments, sizes, num_tensors, hyper);
  } else {
    sgd_all<T, true, false>(params, grads, moments, sizes, num_tensors, hyper);
  }
}

template <typename T>
void nadam_update(T* const* params, const T* const* grads, T* const* ms, T* const* vs,
                  const std::int64_t* sizes, std::int64_t num_tensors,
                  const NadamCoefficients<double>& coefficients) {
  FUSEDNN_DISPATCH(nadam_update<T>(params, grads, ms, vs, sizes, num_tensors, coefficients));
  update_elements(params, grads, sizes, num_tensors,
                  [c = coefficients.as<T>()](T& p, T g, T& m, T& v) {
                    nadam_element(p, g, m, v, c);
                  },
                  ms, vs);
}

template <typename T>
void adamax_update(T* const* params, const T* const* grads, T* const* ms, T* const* us,
                   const std::int64_t* sizes, std::int64_t num_tensors,
                   const AdamaxCoefficients<double>& coefficients) {
  FUSEDNN_DISPATCH(adamax_update<T>(params, grads, ms, us, sizes, num_tensors, coefficients));
  update_elements(params, grads, sizes, num_tensors,
                  [c = coefficients.as<T>()](T& p, T g, T& m, T& u) {
                    adamax_element(p, g, m, u, c);
                  },
                  ms, us);
}

template <typename T>
void lion_update(T* const* params, const T* const* grads, T* const* ms,
                 const std::int64_t* sizes, std::int64_t num_tensors,
                 const LionCoefficients<double>& coefficients) {
  FUSEDNN_DISPATCH(lion_update<T>(params, grads, ms, sizes, num_tensors, coefficients));
  update_elements(params, grads, sizes, num_tensors,
                  [c = coefficients.as<T>()](T& p, T g, T& m) { lion_element(p, g, m, c); },
                  ms);
}

template void adam_update<float>(float* const*, const float* const*, float* const*, float* const*,
                                 const std::int64_t*, std::int64_t, const AdamHyperparameters&);
template void adam_update<double>(double* const*, const double* const*, double* const*,
                                  double* const*, const std::int64_t*, std::int64_t,
                                  const AdamHyperparameters&);
template void sgd_update<float>(float* const*, const float* const*, float* const*,
                                const std::int64_t*, std::int64_t, const SgdHyperparameters&);
template void sgd_update<double>(double* const*, const double* const*, double* const*,
                                 const std::int64_t*, std::int64_t, const SgdHyperparameters&);

#define FUSEDNN_OPTIMIZER_INSTANCES(T)                                                          \
  template void nadam_update<T>(T* const*, const T* const*, T* const*, T* const*,               \
                                const std::int64_t*, std::int64_t,                               \
                                const NadamCoefficients<double>&);                               \
  template void adamax_update<T>(T* const*, const T* const*, T* const*, T* const*,              \
                                 const std::int64_t*, std::int64_t,                              \
                                 const AdamaxCoefficients<double>&);                             \
  template void lion_update<T>(T* const*, const T* const*, T* const*, const std::int64_t*,      \
                               std::int64_t, const LionCoefficients<double>&);
FUSEDNN_OPTIMIZER_INSTANCES(float)
FUSEDNN_OPTIMIZER_INSTANCES(double)
#undef FUSEDNN_OPTIMIZER_INSTANCES

FUSEDNN_CPU_END
