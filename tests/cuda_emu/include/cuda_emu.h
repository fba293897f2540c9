// cuda_emu: the real kernels of csrc/cuda/ run as host C++ on the CPU, one
// cooperative fiber per CUDA thread, so that every kernel executes in CI on a
// machine without a GPU. This header is the emulator's runtime interface; the
// stand-ins for <cuda_runtime.h>, <mma.h> and <cooperative_groups.h> next to it
// build the CUDA vocabulary on top of it. The runtime is emu.cpp.
//
// What it checks:
//  - __syncthreads: every thread of the block arrives, at the same call site;
//    a thread that exits or waits elsewhere while others wait is an error.
//  - warp shuffles and ballots: a rendezvous of exactly the lanes in the mask,
//    at one call site; a lane outside its own mask, a lane in the mask that never
//    arrives, or a source lane outside the mask (undefined on a GPU: the
//    result is poisoned with all-ones bits, a NaN for floats) fail loudly.
//  - grid.sync(): only in cooperative launches, whose blocks run together; the
//    launch must fit the occupancy (blocks per SM times SMs) the device reports.
//  - shared memory: static __shared__ per block and dynamic shared memory per
//    block, both poisoned (all bytes 0xFF: NaN floats) before each block runs;
//    dynamic shared memory above 48 KB needs cudaFuncSetAttribute, and never
//    more than the device's opt-in limit.
//  - wmma (TF32 m16n16k8 only): all 32 lanes take part with the same pointer
//    and ldm; pointers 32-byte aligned, ldm a multiple of 16 bytes; the element
//    order inside a fragment is a seeded random permutation, so code that relies
//    on the unspecified layout gives wrong results; mma truncates its inputs to
//    TF32 as the tensor cores do.
//  - with -fsanitize=thread: happens-before only at __syncthreads (within the
//    block), grid.sync (within the grid) and the kernel's end (to the host), so
//    ThreadSanitizer reports races in shared and global memory, also between
//    blocks. Shuffles and wmma operations carry no memory ordering.
//  - faults are asynchronous: a __trap() ends its launch, which still returns
//    success; the next cudaStreamSynchronize / cudaDeviceSynchronize and every
//    later launch report cudaErrorLaunchFailure (what FUSEDNN_CUDA_SYNC=1 of
//    csrc/cuda/launch.cuh is for).
//  - seeded random order (CUDA_EMU_SEED): of the blocks, and of the fibers at
//    every scheduling step; in cooperative launches one random block runs as far
//    as it can before another (block skew), so code that assumes an order of
//    threads or blocks, or a missing grid.sync, gives wrong results.
//
// Counters for the drivers: host queries (device attributes, occupancy,
// function attributes), threads and blocks launched.
//
// What it cannot check: speed, coalescing, bank conflicts, occupancy from
// register use (it counts threads and shared memory only), real device math
// (expf, TF32 rounding details, fused multiply-add contraction, the order of
// the tensor cores' sums), the CUDA memory model (no reordering, no stale
// caches: fences and volatile are not tested), PTX and inline assembly,
// streams (every call is synchronous), static __shared__ in cooperative
// launches (one copy for all blocks: an error once such a kernel writes it; use
// dynamic shared memory), and
// the static shared-memory limit (ptxas enforces it at compile time).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

struct uint3 {
  unsigned x, y, z;
};

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
};

namespace cuda_emu {

constexpr int kWarpSize = 32;

// Where a barrier or collective is called: the checks compare call sites.
struct Site {
  const char* file;
  int line;
};
constexpr int kDefaultSharedBytes = 48 * 1024;
constexpr int kOptinSharedBytes = 227 * 1024;  // an H100's per-block opt-in limit
constexpr int kSharedBytesPerSM = 228 * 1024;
constexpr int kMaxThreadsPerSM = 2048;
constexpr int kMaxBlocksPerSM = 32;

// The current thread's coordinates (valid inside a kernel only), by value: the
// kernels never touch the emulator's memory, which ThreadSanitizer would see.
uint3 thread_idx();
uint3 block_idx();
uint3 block_dim();
uint3 grid_dim();

void syncthreads(Site site);
// A thread traps: the launch stops (no other thread or block runs on) and the
// next synchronisation, and every later launch, returns cudaErrorLaunchFailure
// (sticky, as a fault corrupts a GPU context).
[[noreturn]] void trap(Site site);
// The sticky fault of an earlier launch (cudaError_t), or 0.
int sticky_fault();
void grid_sync(Site site);

enum class WarpOp { kShuffle, kBallot, kUniform, kMma };
struct LaneInput {
  std::uint64_t value = 0;   // shuffle: the lane's value; ballot: predicate; uniform: a key
  std::uint64_t value2 = 0;  // uniform: a second key
  int source = 0;            // shuffle: the lane to read from
  float* fragments[4] = {};  // mma: d, a, b, c element arrays
};
// A rendezvous of the lanes in `mask` of the caller's warp; returns the
// caller's result (shuffle: the source lane's value; ballot: the mask of true
// predicates).
std::uint64_t warp_collective(unsigned mask, WarpOp op, const LaneInput& in, Site site);
int lane_id();

// Launches `body(context)` in every thread of the grid and returns when all
// have finished; an error code (cudaError_t) when the launch is invalid.
struct Launch {
  const void* kernel;
  dim3 grid, block;
  std::size_t dynamic_shared_bytes;
  bool cooperative;
  void (*body)(const void* context);
  const void* context;
};
int launch(const Launch& launch);
void* dynamic_shared();

void set_max_dynamic_shared(const void* kernel, int bytes);
int occupancy(const void* kernel, int block_threads, std::size_t dynamic_shared_bytes);
int multiprocessors();
// Host queries so far (device attributes and properties, occupancy, function
// attributes): a driver call each on a GPU, so a driver can check that a
// launcher repeats none of them for a shape it has seen.
int host_queries();
void note_host_query();
// Threads and blocks of all launches so far (how a launcher spreads its work).
long long threads_launched();
long long blocks_launched();

// wmma fragments: (row, col) of element t of lane l for a fragment of `rows` x
// `cols` elements, in the seeded scrambled order.
struct FragmentSlot {
  int row, col;
};
const FragmentSlot* fragment_layout(int rows, int cols);

[[noreturn]] void fail(const char* format, ...) __attribute__((format(printf, 1, 2)));

template <typename T>
std::uint64_t to_bits(T v) {
  static_assert(sizeof(T) <= 8, "a shuffled value has at most 64 bits");
  std::uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  return bits;
}

template <typename T>
T from_bits(std::uint64_t bits) {
  T v;
  std::memcpy(&v, &bits, sizeof(T));
  return v;
}

}  // namespace cuda_emu

#define CUDA_EMU_SITE (::cuda_emu::Site{__FILE__, __LINE__})
