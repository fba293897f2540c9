// Fused optimizer updates on the GPU: multi-tensor apply. The pointers and
// sizes of up to kMaxTensorsPerLaunch tensors travel in one kernel-parameter
// table (under the 4 KB parameter limit), so a model with that many weight
// tensors is updated by a single launch. Each tensor is cut into chunks of
// kChunkElements; the blocks walk over all chunks of all tensors (grid-stride)
// and find a chunk's tensor by binary search in the table's chunk prefix sums.
// Within a chunk every thread keeps kIlp elements of each array in registers,
// so the loads of one iteration are all in flight together. A thread's work on
// a chunk (adam_chunk, sgd_chunk, element_chunk) is also a host function, which lets a test
// run the kernels' indexing on a machine without a GPU.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "fusednn/cuda_check.h"
#include "fusednn/optimizers.h"
#include "launch.cuh"

namespace fusednn::cuda {

namespace {

constexpr int kThreadsPerBlock = 256;
constexpr int kIlp = 4;
constexpr std::int64_t kChunkElements = 16 * kThreadsPerBlock * kIlp;
constexpr int kMaxBlocks = 4096;

// kDepth arrays per tensor (parameter, gradient, state...), each of sizes[i] floats.
template <int kDepth>
struct TensorTable {
  float* arrays[kDepth][kMaxTensorsPerLaunch];
  std::int64_t sizes[kMaxTensorsPerLaunch];
  // first_chunk[i]: index of tensor i's first chunk; first_chunk[num_tensors]: total chunks.
  std::int64_t first_chunk[kMaxTensorsPerLaunch + 1];
  int num_tensors;
};

struct AdamDeviceHyperparameters {
  float one_minus_beta_1, one_minus_beta_2, epsilon, step_size, decay;
};

struct SgdDeviceHyperparameters {
  float learning_rate, momentum, decay;
};

AdamDeviceHyperparameters device_hyperparameters(const AdamHyperparameters& h) {
  return {static_cast<float>(1.0 - h.beta_1), static_cast<float>(1.0 - h.beta_2),
          static_cast<float>(h.epsilon), static_cast<float>(h.step_size),
          static_cast<float>(h.decay)};
}

SgdDeviceHyperparameters device_hyperparameters(const SgdHyperparameters& h) {
  return {static_cast<float>(h.learning_rate), static_cast<float>(h.momentum),
          static_cast<float>(h.decay)};
}

static_assert(sizeof(TensorTable<4>) + sizeof(AdamDeviceHyperparameters) <= 4096,
              "Adam kernel parameters exceed the 4 KB limit");

// The tensor that owns `chunk` and the element range [begin, end) of the chunk.
template <int kDepth>
__host__ __device__ __forceinline__ int locate_chunk(const TensorTable<kDepth>& table,
                                                     std::int64_t chunk, std::int64_t* begin,
                                                     std::int64_t* end) {
  int low = 0, high = table.num_tensors - 1;
  while (low < high) {  // last tensor whose first chunk is <= chunk
    const int mid = (low + high + 1) / 2;
    if (table.first_chunk[mid] <= chunk) low = mid; else high = mid - 1;
  }
  *begin = (chunk - table.first_chunk[low]) * kChunkElements;
  *end = std::min(*begin + kChunkElements, table.sizes[low]);
  return low;
}

// What thread `thread` (of kThreadsPerBlock) of a block does for one chunk.
// Host-callable so that the indexing can be checked on a machine without a GPU.
__host__ __device__ inline void adam_chunk(const TensorTable<4>& table, std::int64_t chunk,
                                           int thread, const AdamDeviceHyperparameters& h) {
  std::int64_t begin, end;
  const int i = locate_chunk(table, chunk, &begin, &end);
  float* __restrict__ p = table.arrays[0][i];
  const float* __restrict__ g = table.arrays[1][i];
  float* __restrict__ m = table.arrays[2][i];
  float* __restrict__ v = table.arrays[3][i];
  for (std::int64_t base = begin + thread; base < end;
       base += static_cast<std::int64_t>(kThreadsPerBlock) * kIlp) {
    float rp[kIlp] = {}, rg[kIlp] = {}, rm[kIlp] = {}, rv[kIlp] = {};
    for (int k = 0; k < kIlp; ++k) {
      const std::int64_t e = base + k * kThreadsPerBlock;
      if (e < end) {
        rp[k] = p[e];
        rg[k] = g[e];
        rm[k] = m[e];
        rv[k] = v[e];
      }
    }
    for (int k = 0; k < kIlp; ++k) {
      rm[k] += h.one_minus_beta_1 * (rg[k] - rm[k]);
      rv[k] += h.one_minus_beta_2 * (rg[k] * rg[k] - rv[k]);
      rp[k] -= h.decay * rp[k];
      rp[k] -= h.step_size * rm[k] / (sqrtf(rv[k]) + h.epsilon);
    }
    for (int k = 0; k < kIlp; ++k) {
      const std::int64_t e = base + k * kThreadsPerBlock;
      if (e < end) {
        p[e] = rp[k];
        m[e] = rm[k];
        v[e] = rv[k];
      }
    }
  }
}

// What thread `thread` does for one chunk of an optimizer whose per-element
// update is `element(p, g, state...)` (optimizers.h): arrays 0 parameters,
// 1 gradients, 2.. the state, all but the gradients written back.
template <int kDepth, typename Element>
__host__ __device__ inline void element_chunk(const TensorTable<kDepth>& table, std::int64_t chunk,
                                              int thread, const Element& element) {
  std::int64_t begin, end;
  const int i = locate_chunk(table, chunk, &begin, &end);
  for (std::int64_t base = begin + thread; base < end;
       base += static_cast<std::int64_t>(kThreadsPerBlock) * kIlp) {
    float r[kIlp][kDepth] = {};
    for (int k = 0; k < kIlp; ++k) {
      const std::int64_t e = base + k * kThreadsPerBlock;
      if (e < end) {
        for (int d = 0; d < kDepth; ++d) r[k][d] = table.arrays[d][i][e];
      }
    }
    for (int k = 0; k < kIlp; ++k) element(r[k]);
    for (int k = 0; k < kIlp; ++k) {
      const std::int64_t e = base + k * kThreadsPerBlock;
      if (e < end) {
        table.arrays[0][i][e] = r[k][0];
        for (int d = 2; d < kDepth; ++d) table.arrays[d][i][e] = r[k][d];
      }
    }
  }
}

// The per-element updates of optimizers.h on one element's registers
// (parameter, gradient, state...).
struct NadamElement {
  NadamCoefficients<float> c;
  __host__ __device__ void operator()(float (&r)[4]) const {
    nadam_element(r[0], r[1], r[2], r[3], c);
  }
};

struct AdamaxElement {
  AdamaxCoefficients<float> c;
  __host__ __device__ void operator()(float (&r)[4]) const {
    adamax_element(r[0], r[1], r[2], r[3], c);
  }
};

struct LionElement {
  LionCoefficients<float> c;
  __host__ __device__ void operator()(float (&r)[3]) const { lion_element(r[0], r[1], r[2], c); }
};

// Arrays: 0 parameters, 1 gradients, 2 moments (unused without momentum).
template <bool kMomentum, bool kNesterov>
__host__ __device__ inline void sgd_chunk(const TensorTable<3>& table, std::int64_t chunk,
                                          int thread, const SgdDeviceHyperparameters& h) {
  std::int64_t begin, end;
  const int i = locate_chunk(table, chunk, &begin, &end);
  float* __restrict__ p = table.arrays[0][i];
  const float* __restrict__ g = table.arrays[1][i];
  float* __restrict__ m = table.arrays[2][i];
  for (std::int64_t base = begin + thread; base < end;
       base += static_cast<std::int64_t>(kThreadsPerBlock) * kIlp) {
    float rp[kIlp] = {}, rg[kIlp] = {}, rm[kIlp] = {};
    for (int k = 0; k < kIlp; ++k) {
      const std::int64_t e = base + k * kThreadsPerBlock;
      if (e < end) {
        rp[k] = p[e];
        rg[k] = g[e];
        if (kMomentum) rm[k] = m[e];
      }
    }
    for (int k = 0; k < kIlp; ++k) {
      const float step = h.learning_rate * rg[k];
      rp[k] -= h.decay * rp[k];
      if (kMomentum) {
        rm[k] = h.momentum * rm[k] - step;
        rp[k] += kNesterov ? h.momentum * rm[k] - step : rm[k];
      } else {
        rp[k] -= step;
      }
    }
    for (int k = 0; k < kIlp; ++k) {
      const std::int64_t e = base + k * kThreadsPerBlock;
      if (e < end) {
        p[e] = rp[k];
        if (kMomentum) m[e] = rm[k];
      }
    }
  }
}

__global__ void __launch_bounds__(kThreadsPerBlock)
    adam_kernel(TensorTable<4> table, AdamDeviceHyperparameters h) {
  const std::int64_t num_chunks = table.first_chunk[table.num_tensors];
  for (std::int64_t chunk = blockIdx.x; chunk < num_chunks; chunk += gridDim.x) {
    adam_chunk(table, chunk, threadIdx.x, h);
  }
}

template <bool kMomentum, bool kNesterov>
__global__ void __launch_bounds__(kThreadsPerBlock)
    sgd_kernel(TensorTable<3> table, SgdDeviceHyperparameters h) {
  const std::int64_t num_chunks = table.first_chunk[table.num_tensors];
  for (std::int64_t chunk = blockIdx.x; chunk < num_chunks; chunk += gridDim.x) {
    sgd_chunk<kMomentum, kNesterov>(table, chunk, threadIdx.x, h);
  }
}

template <int kDepth, typename Element>
__global__ void __launch_bounds__(kThreadsPerBlock)
    element_kernel(TensorTable<kDepth> table, Element element) {
  const std::int64_t num_chunks = table.first_chunk[table.num_tensors];
  for (std::int64_t chunk = blockIdx.x; chunk < num_chunks; chunk += gridDim.x) {
    element_chunk(table, chunk, threadIdx.x, element);
  }
}

// Packs the tensors into tables of up to kMaxTensorsPerLaunch entries and calls
// launch(table, num_chunks) for each full table; empty tensors are skipped.
template <int kDepth, typename Launch>
void for_each_table(float* const* const (&arrays)[kDepth], const std::int64_t* sizes,
                    std::int64_t num_tensors, Launch launch) {
  TensorTable<kDepth> table;
  table.num_tensors = 0;
  std::int64_t chunks = 0;
  for (std::int64_t i = 0; i < num_tensors; ++i) {
    if (sizes[i] == 0) continue;
    const int slot = table.num_tensors++;
    for (int d = 0; d < kDepth; ++d) table.arrays[d][slot] = arrays[d] ? arrays[d][i] : nullptr;
    table.sizes[slot] = sizes[i];
    table.first_chunk[slot] = chunks;
    chunks += (sizes[i] + kChunkElements - 1) / kChunkElements;
    if (table.num_tensors == kMaxTensorsPerLaunch) {
      table.first_chunk[table.num_tensors] = chunks;
      launch(table, chunks);
      table.num_tensors = 0;
      chunks = 0;
    }
  }
  if (table.num_tensors > 0) {
    table.first_chunk[table.num_tensors] = chunks;
    launch(table, chunks);
  }
}

unsigned grid_for(std::int64_t num_chunks) {
  return static_cast<unsigned>(std::min<std::int64_t>(num_chunks, kMaxBlocks));
}

template <bool kMomentum, bool kNesterov>
void launch_sgd(float* const* const (&arrays)[3], const std::int64_t* sizes,
                std::int64_t num_tensors, const SgdDeviceHyperparameters& h, cudaStream_t stream) {
  for_each_table<3>(arrays, sizes, num_tensors,
                    [&](const TensorTable<3>& table, std::int64_t num_chunks) {
                      launch_kernel(sgd_kernel<kMomentum, kNesterov>, grid_for(num_chunks),
                                    kThreadsPerBlock, 0, stream, table, h);
                    });
}

template <int kDepth, typename Element>
void launch_elements(float* const* const (&arrays)[kDepth], const std::int64_t* sizes,
                     std::int64_t num_tensors, const Element& element, std::uintptr_t stream) {
  static_assert(sizeof(TensorTable<kDepth>) + sizeof(Element) <= 4096,
                "kernel parameters exceed the 4 KB limit");
  const auto s = reinterpret_cast<cudaStream_t>(stream);
  for_each_table<kDepth>(arrays, sizes, num_tensors,
                         [&](const TensorTable<kDepth>& table, std::int64_t num_chunks) {
                           launch_kernel(element_kernel<kDepth, Element>, grid_for(num_chunks),
                                         kThreadsPerBlock, 0, s, table, element);
                         });
}

}  // namespace

void adam_update(float* const* params, const float* const* grads, float* const* ms,
                 float* const* vs, const std::int64_t* sizes, std::int64_t num_tensors,
                 const AdamHyperparameters& hyper, std::uintptr_t stream) {
  const AdamDeviceHyperparameters h = device_hyperparameters(hyper);
  const auto s = reinterpret_cast<cudaStream_t>(stream);
  float* const* const arrays[4] = {params, const_cast<float* const*>(grads), ms, vs};
  for_each_table<4>(arrays, sizes, num_tensors,
                    [&](const TensorTable<4>& table, std::int64_t num_chunks) {
                      launch_kernel(adam_kernel, grid_for(num_chunks), kThreadsPerBlock, 0, s,
                                    table, h);
                    });
}

void sgd_update(float* const* params, const float* const* grads, float* const* moments,
                const std::int64_t* sizes, std::int64_t num_tensors,
                const SgdHyperparameters& hyper, std::uintptr_t stream) {
  const SgdDeviceHyperparameters h = device_hyperparameters(hyper);
  const auto s = reinterpret_cast<cudaStream_t>(stream);
  float* const* const arrays[3] = {params, const_cast<float* const*>(grads), moments};
  if (moments == nullptr) {
    launch_sgd<false, false>(arrays, sizes, num_tensors, h, s);
  } else if (hyper.nesterov) {
    launch_sgd<true, true>(arrays, sizes, num_tensors, h, s);
  } else {
    launch_sgd<true, false>(arrays, sizes, num_tensors, h, s);
  }
}

void nadam_update(float* const* params, const float* const* grads, float* const* ms,
                  float* const* vs, const std::int64_t* sizes, std::int64_t num_tensors,
                  const NadamCoefficients<double>& coefficients, std::uintptr_t stream) {
  float* const* const arrays[4] = {params, const_cast<float* const*>(grads), ms, vs};
  launch_elements<4>(arrays, sizes, num_tensors, NadamElement{coefficients.as<float>()}, stream);
}

void adamax_update(float* const* params, const float* const* grads, float* const* ms,
                   float* const* us, const std::int64_t* sizes, std::int64_t num_tensors,
                   const AdamaxCoefficients<double>& coefficients, std::uintptr_t stream) {
  float* const* const arrays[4] = {params, const_cast<float* const*>(grads), ms, us};
  launch_elements<4>(arrays, sizes, num_tensors, AdamaxElement{coefficients.as<float>()}, stream);
}

void lion_update(float* const* params, const float* const* grads, float* const* ms,
                 const std::int64_t* sizes, std::int64_t num_tensors,
                 const LionCoefficients<double>& coefficients, std::uintptr_t stream) {
  float* const* const arrays[3] = {params, const_cast<float* const*>(grads), ms};
  launch_elements<3>(arrays, sizes, num_tensors, LionElement{coefficients.as<float>()}, stream);
}

}  // namespace fusednn::cuda
