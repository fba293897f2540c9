// The emulator's runtime (interface and checks: include/cuda_emu.h).
//
// Fibers: one per CUDA thread, switched by the hand-written x86-64 context
// switch below. ucontext's swapcontext saves and restores the signal mask with
// a system call on every switch: a ping-pong of 2 x 10^6 switches between two
// contexts took 1.6 us per switch with swapcontext and 0.11 us with this one
// (2026-12-06, 2-core Xeon shared with other jobs, load average 16: indicative
// only, but the ratio of 14 is the system call), and a kernel test makes
// millions of switches.
//
// Scheduling: the blocks of a launch run one after another in a seeded random
// order, each on a fresh OS thread (static __shared__ is thread_local, so each
// block gets its own); a cooperative launch runs all its blocks' fibers together
// on one OS thread, one block at a time for as long as it can go on (block
// skew, see run_fibers). A fiber runs until it reaches a barrier, a warp
// collective or its end; the scheduler then resumes ready fibers in a seeded
// random order.
// Nothing runnable while fibers wait is a deadlock: reported with the waiting
// call sites.
//
// Static __shared__ variables are thread_local (include/cuda_runtime.h): the
// executable's TLS segment holds them; a block's OS thread runs nothing else that uses it.
//
// This file is compiled without ThreadSanitizer instrumentation: its own
// bookkeeping (touched by every fiber) is not the kernels' memory. The kernels'
// ordering reaches ThreadSanitizer through __tsan_acquire/__tsan_release only.
#include <dlfcn.h>
#include <link.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cuda_emu.h"
#include "cuda_runtime.h"

#if !defined(__x86_64__)
#error "cuda_emu's context switch is written for x86-64"
#endif

// The ThreadSanitizer build compiles this file without -fsanitize=thread and
// with -DCUDA_EMU_TSAN (see the header comment).
#if defined(__SANITIZE_THREAD__) && !defined(CUDA_EMU_TSAN)
#define CUDA_EMU_TSAN 1
#endif
#if defined(__SANITIZE_ADDRESS__)
#define CUDA_EMU_ASAN 1
#endif

extern "C" {
#ifdef CUDA_EMU_TSAN
void* __tsan_get_current_fiber();
void* __tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void* fiber);
void __tsan_switch_to_fiber(void* fiber, unsigned flags);
void __tsan_acquire(void* addr);
void __tsan_release(void* addr);
#endif
#ifdef CUDA_EMU_ASAN
void __sanitizer_start_switch_fiber(void** fake_stack_save, const void* bottom, std::size_t size);
void __sanitizer_finish_switch_fiber(void* fake_stack_save, const void** bottom_old,
                                     std::size_t* size_old);
void __asan_poison_memory_region(const volatile void* addr, std::size_t size);
void __asan_unpoison_memory_region(const volatile void* addr, std::size_t size);
#endif
// Saves the callee-saved registers on the current stack, stores the stack
// pointer in *save, continues on the stack `next`.
void cuda_emu_switch(void** save, void* next);
void cuda_emu_fiber_start();
}

// rbx carries the fiber's argument into cuda_emu_fiber_start, which calls
// cuda_emu_fiber_main(rbx) with an aligned stack; that call never returns.
asm(R"(
    .text
    .globl cuda_emu_switch
    .type cuda_emu_switch, @function
cuda_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size cuda_emu_switch, .-cuda_emu_switch

    .globl cuda_emu_fiber_start
    .type cuda_emu_fiber_start, @function
cuda_emu_fiber_start:
    movq %rbx, %rdi
    call cuda_emu_fiber_main
    ud2
    .size cuda_emu_fiber_start, .-cuda_emu_fiber_start
)");

namespace cuda_emu {

namespace {

// Stack per fiber: kernels keep small register tiles; sanitizers' frames are
// larger. Only touched pages are committed (MAP_NORESERVE).
constexpr std::size_t kStackBytes = 256 * 1024;
constexpr std::size_t kGuardBytes = 4096;
constexpr int kDeviceMultiprocessors = 4;

enum class State { kReady, kBarrier, kWarp, kGrid, kDone, kTrapped };

struct Block;
struct Collective;

// Memory of fiber stacks and dynamic shared memory: fresh pages for every block,
// returned with munmap, which also clears ThreadSanitizer's record of them (a
// free() would count as a write racing with the fibers' accesses).
struct Mapping {
  unsigned char* memory = nullptr;
  std::size_t bytes = 0;
  void map(std::size_t size) {
    bytes = (size + 4095) / 4096 * 4096;
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) fail("cannot map %zu bytes", bytes);
    memory = static_cast<unsigned char*>(p);
  }
  ~Mapping() {
    if (memory == nullptr) return;
#ifdef CUDA_EMU_ASAN
    __asan_unpoison_memory_region(memory, bytes);  // the pages may be mapped again
#endif
    munmap(memory, bytes);
  }
};

struct Fiber {
  uint3 thread, block_index;
  int linear = 0;  // thread index within the block
  Block* block = nullptr;
  void* sp = nullptr;
  char* stack = nullptr;
  State state = State::kReady;
  Site waiting_at{nullptr, 0};
  Collective* collective = nullptr;
#ifdef CUDA_EMU_TSAN
  void* tsan_fiber = nullptr;
#endif
};

// Warp collectives in progress at once, per warp (lanes in disjoint masks).
constexpr int kMaxCollectives = 4;

struct Collective {
  bool in_use = false;
  unsigned mask = 0;
  WarpOp op = WarpOp::kShuffle;
  Site site{nullptr, 0};
  unsigned arrived = 0;
  unsigned unread = 0;
  LaneInput in[kWarpSize];
  std::uint64_t result[kWarpSize] = {};
};

struct Block {
  uint3 index;
  std::vector<Fiber*> fibers;
  int barrier_arrived = 0;
  Site barrier_site{nullptr, 0};
  unsigned barrier_generation = 0;
  char barrier_sync[2] = {};  // ThreadSanitizer sync objects, alternating by generation
  // Collectives in progress, kMaxCollectives per warp, allocated before the
  // fibers run: the heap is touched by the block's OS thread only.
  std::vector<Collective> collectives;
  Mapping dynamic_shared;
};

struct Grid {
  const Launch* launch = nullptr;
  uint3 block_dim, grid_dim;
  std::vector<Fiber*>* running = nullptr;  // the fibers of the blocks now running
  int threads = 0;
  int grid_arrived = 0;
  Site grid_site{nullptr, 0};
  unsigned grid_generation = 0;
  char grid_sync_objects[2] = {};
  char done_sync = 0;  // kernel end -> host
  bool trapped = false;  // a thread trapped: the launch ends
  std::mt19937_64 rng;
};

Grid* g_grid = nullptr;
Fiber* g_current = nullptr;
void* g_scheduler_sp = nullptr;
#ifdef CUDA_EMU_TSAN
void* g_scheduler_tsan = nullptr;
#endif
#ifdef CUDA_EMU_ASAN
const void* g_scheduler_stack_bottom = nullptr;
std::size_t g_scheduler_stack_size = 0;
#endif

std::map<const void*, int> g_max_dynamic_shared;
int g_launches = 0;
int g_sticky_fault = 0;  // cudaError_t of a trapped launch
int g_host_queries = 0;
long long g_threads_launched = 0;
long long g_blocks_launched = 0;

void tsan_acquire(void* p) {
#ifdef CUDA_EMU_TSAN
  __tsan_acquire(p);
#else
  (void)p;
#endif
}

void tsan_release(void* p) {
#ifdef CUDA_EMU_TSAN
  __tsan_release(p);
#else
  (void)p;
#endif
}

std::uint64_t seed() {
  const char* text = std::getenv("CUDA_EMU_SEED");
  return text ? std::strtoull(text, nullptr, 10) : 1;
}

bool same_site(Site a, Site b) {
  return a.line == b.line && a.file && b.file && std::strcmp(a.file, b.file) == 0;
}

std::string describe(const Fiber& f) {
  char text[256];
  std::snprintf(text, sizeof(text), "thread (%u,%u,%u) of block (%u,%u,%u)", f.thread.x,
                f.thread.y, f.thread.z, f.block_index.x, f.block_index.y, f.block_index.z);
  return text;
}

std::string where(const Fiber& f) {
  char text[512];
  const char* what = f.state == State::kBarrier ? "waits at __syncthreads"
                     : f.state == State::kGrid  ? "waits at grid.sync"
                     : f.state == State::kWarp  ? "waits at a warp collective"
                                                : "has exited";
  if (f.state == State::kDone) return what;
  std::snprintf(text, sizeof(text), "%s (%s:%d)", what, f.waiting_at.file, f.waiting_at.line);
  return text;
}

// ----- fibers -------------------------------------------------------------------

void switch_to_scheduler(Fiber& f) {
#ifdef CUDA_EMU_TSAN
  __tsan_switch_to_fiber(g_scheduler_tsan, 1 /* __tsan_switch_to_fiber_no_sync */);
#endif
#ifdef CUDA_EMU_ASAN
  void* fake_stack = nullptr;
  __sanitizer_start_switch_fiber(f.state == State::kDone ? nullptr : &fake_stack,
                                 g_scheduler_stack_bottom, g_scheduler_stack_size);
  cuda_emu_switch(&f.sp, g_scheduler_sp);
  __sanitizer_finish_switch_fiber(fake_stack, nullptr, nullptr);
#else
  cuda_emu_switch(&f.sp, g_scheduler_sp);
#endif
}

void resume(Fiber& f) {
  g_current = &f;
#ifdef CUDA_EMU_TSAN
  __tsan_switch_to_fiber(f.tsan_fiber, 1 /* __tsan_switch_to_fiber_no_sync */);
#endif
#ifdef CUDA_EMU_ASAN
  void* fake_stack = nullptr;
  __sanitizer_start_switch_fiber(&fake_stack, f.stack, kStackBytes);
  cuda_emu_switch(&g_scheduler_sp, f.sp);
  __sanitizer_finish_switch_fiber(fake_stack, nullptr, nullptr);
#else
  cuda_emu_switch(&g_scheduler_sp, f.sp);
#endif
  g_current = nullptr;
}

// Blocks the current fiber until the scheduler resumes it.
void wait(State state, Site site) {
  Fiber& f = *g_current;
  f.state = state;
  f.waiting_at = site;
  switch_to_scheduler(f);
}

}  // namespace

}  // namespace cuda_emu

extern "C" [[noreturn]] void cuda_emu_fiber_main(cuda_emu::Fiber* f) {
  using namespace cuda_emu;
#ifdef CUDA_EMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &g_scheduler_stack_bottom, &g_scheduler_stack_size);
#endif
  g_grid->launch->body(g_grid->launch->context);
  tsan_release(&g_grid->done_sync);
  f->state = State::kDone;
  switch_to_scheduler(*f);
  __builtin_trap();
}

namespace cuda_emu {

namespace {

// A fiber's initial stack: cuda_emu_switch's frame (mxcsr, x87 control word,
// six registers with rbx = the fiber) returning into cuda_emu_fiber_start.
void prepare(Fiber& f) {
  std::uintptr_t top = reinterpret_cast<std::uintptr_t>(f.stack + kStackBytes);
  top &= ~std::uintptr_t(15);
  // After the ret into cuda_emu_fiber_start the stack pointer is `top`, 16-byte
  // aligned as its call to cuda_emu_fiber_main needs.
  auto* sp = reinterpret_cast<std::uint64_t*>(top);
  *--sp = reinterpret_cast<std::uint64_t>(&cuda_emu_fiber_start);
  *--sp = 0;                                      // rbp
  *--sp = reinterpret_cast<std::uint64_t>(&f);    // rbx
  for (int r = 0; r < 4; ++r) *--sp = 0;          // r12..r15
  *--sp = 0x1f80ull | (0x037full << 32);          // default mxcsr and x87 control word
  f.sp = sp;
#ifdef CUDA_EMU_TSAN
  f.tsan_fiber = __tsan_create_fiber(0);
#endif
}

// ----- shared memory ------------------------------------------------------------

// This OS thread's copy of the executable's TLS segment, where __shared__
// variables live (glibc reports its address in dlpi_tls_data).
struct TlsRange {
  unsigned char* begin = nullptr;
  std::size_t bytes = 0;
};

int find_executable_tls(dl_phdr_info* info, std::size_t, void* data) {
  auto* range = static_cast<TlsRange*>(data);
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    if (info->dlpi_phdr[i].p_type == PT_TLS) {
      range->begin = static_cast<unsigned char*>(info->dlpi_tls_data);
      range->bytes = info->dlpi_phdr[i].p_memsz;
    }
  }
  return 1;  // the first object is the executable
}

thread_local unsigned char g_tls_probe;  // must lie inside the range below

std::pair<unsigned char*, std::size_t> static_shared_range() {
  TlsRange range;
  dl_iterate_phdr(find_executable_tls, &range);
  if (&g_tls_probe < range.begin || &g_tls_probe >= range.begin + range.bytes) {
    fail("internal: static __shared__ memory is not where the emulator expects it");
  }
  return {range.begin, range.bytes};
}

void poison(void* p, std::size_t bytes) { std::memset(p, 0xff, bytes); }

bool is_poisoned(const unsigned char* p, std::size_t bytes) {
  for (std::size_t i = 0; i < bytes; ++i) {
    if (p[i] != 0xff && p + i != &g_tls_probe) return false;
  }
  return true;
}

// ----- running fibers -------------------------------------------------------------

void report_deadlock(const std::vector<Fiber*>& fibers) {
  // A warp collective whose mask names a lane that is elsewhere...
  for (Fiber* f : fibers) {
    if (f->state != State::kWarp) continue;
    const Collective& c = *f->collective;
    const int warp_base = f->linear / kWarpSize * kWarpSize;
    for (int lane = 0; lane < kWarpSize; ++lane) {
      const int t = warp_base + lane;
      if (!(c.mask >> lane & 1u) || (c.arrived >> lane & 1u)) continue;
      if (t >= static_cast<int>(f->block->fibers.size())) {
        fail("warp collective at %s:%d with mask 0x%08x: lane %d does not exist (the block has "
             "%zu threads)", c.site.file, c.site.line, c.mask, lane, f->block->fibers.size());
      }
      const Fiber& missing = *f->block->fibers[t];
      fail("warp collective at %s:%d with mask 0x%08x: lane %d (%s) never arrives: it %s",
           c.site.file, c.site.line, c.mask, lane, describe(missing).c_str(),
           where(missing).c_str());
    }
  }
  // ...else a barrier that some thread never reaches.
  for (Fiber* f : fibers) {
    if (f->state != State::kBarrier && f->state != State::kGrid) continue;
    const std::vector<Fiber*>& peers = f->state == State::kBarrier ? f->block->fibers : fibers;
    for (Fiber* other : peers) {
      if (other->state == f->state) continue;
      fail("%s at %s:%d: %s never arrives: it %s",
           f->state == State::kBarrier ? "__syncthreads" : "grid.sync", f->waiting_at.file,
           f->waiting_at.line, describe(*other).c_str(), where(*other).c_str());
    }
  }
  fail("deadlock with no identifiable cause");
}

// Runs the fibers until all have exited. Block skew: a randomly chosen block
// runs until none of its fibers can continue (all wait at grid.sync or have
// exited), so in a cooperative launch one block gets as far ahead of the others
// as the kernel's grid-wide synchronisation allows; within the block, the ready
// fibers run in a random order at every step.
void run_fibers(std::vector<Fiber*>& fibers) {
  std::vector<Fiber*> ready;
  std::vector<Block*> runnable;
  for (;;) {
    runnable.clear();
    bool all_done = true;
    for (Fiber* f : fibers) {
      if (f->state == State::kReady &&
          std::find(runnable.begin(), runnable.end(), f->block) == runnable.end()) {
        runnable.push_back(f->block);
      }
      all_done = all_done && f->state == State::kDone;
    }
    if (all_done || g_grid->trapped) return;
    if (runnable.empty()) report_deadlock(fibers);
    Block* block = runnable[g_grid->rng() % runnable.size()];
    for (;;) {
      ready.clear();
      for (Fiber* f : block->fibers) {
        if (f->state == State::kReady) ready.push_back(f);
      }
      if (ready.empty()) break;
      std::shuffle(ready.begin(), ready.end(), g_grid->rng);
      for (Fiber* f : ready) {
        if (f->state == State::kReady) resume(*f);
        if (g_grid->trapped) return;  // the other fibers are abandoned mid-kernel
      }
    }
  }
}

// Fiber stacks with a guard page below each.
struct Stacks {
  Mapping mapping;
  explicit Stacks(std::size_t count) {
    mapping.map(count * (kStackBytes + kGuardBytes));
    for (std::size_t i = 0; i < count; ++i) {
      mprotect(mapping.memory + i * (kStackBytes + kGuardBytes), kGuardBytes, PROT_NONE);
    }
  }
  char* stack(std::size_t i) const {
    return reinterpret_cast<char*>(mapping.memory) + i * (kStackBytes + kGuardBytes) + kGuardBytes;
  }
};

// The fibers of `blocks` (grid coordinates), run together on this OS thread.
void run_blocks(const std::vector<uint3>& blocks) {
  const Launch& l = *g_grid->launch;
  const int per_block = static_cast<int>(l.block.x * l.block.y * l.block.z);
  const auto [shared_begin, shared_bytes] = static_shared_range();
  poison(shared_begin, shared_bytes);

  std::vector<std::unique_ptr<Block>> block_states;
  std::vector<Fiber> fiber_storage(blocks.size() * per_block);
  std::vector<Fiber*> fibers;
  Stacks stacks(fiber_storage.size());
  for (std::size_t b = 0; b < blocks.size(); ++b) {
    auto block = std::make_unique<Block>();
    block->index = blocks[b];
    block->collectives.resize((per_block + kWarpSize - 1) / kWarpSize * kMaxCollectives);
    if (l.dynamic_shared_bytes > 0) {
      block->dynamic_shared.map(l.dynamic_shared_bytes);
      poison(block->dynamic_shared.memory, l.dynamic_shared_bytes);
#ifdef CUDA_EMU_ASAN
      // Overruns of the launch's size hit poisoned bytes.
      __asan_poison_memory_region(block->dynamic_shared.memory + l.dynamic_shared_bytes,
                                  block->dynamic_shared.bytes - l.dynamic_shared_bytes);
#endif
    }
    for (int t = 0; t < per_block; ++t) {
      Fiber& f = fiber_storage[b * per_block + t];
      f.linear = t;
      f.thread = {t % l.block.x, t / l.block.x % l.block.y, t / (l.block.x * l.block.y)};
      f.block_index = blocks[b];
      f.block = block.get();
      f.stack = stacks.stack(b * per_block + t);
      prepare(f);
      block->fibers.push_back(&f);
      fibers.push_back(&f);
    }
    block_states.push_back(std::move(block));
  }
#ifdef CUDA_EMU_TSAN
  g_scheduler_tsan = __tsan_get_current_fiber();
#endif
  g_grid->running = &fibers;
  run_fibers(fibers);
  g_grid->running = nullptr;
#ifdef CUDA_EMU_TSAN
  for (Fiber& f : fiber_storage) __tsan_destroy_fiber(f.tsan_fiber);
#endif
  if (l.cooperative && !g_grid->trapped && !is_poisoned(shared_begin, shared_bytes)) {
    fail("a cooperative kernel used static __shared__ memory, which the emulator cannot give "
         "each of its blocks (use dynamic shared memory)");
  }
}

}  // namespace

// ----- the kernel-facing interface ------------------------------------------------

uint3 thread_idx() { return g_current->thread; }
uint3 block_idx() { return g_current->block_index; }
uint3 block_dim() { return g_grid->block_dim; }
uint3 grid_dim() { return g_grid->grid_dim; }
int lane_id() { return g_current->linear % kWarpSize; }
void* dynamic_shared() { return g_current->block->dynamic_shared.memory; }

void syncthreads(Site site) {
  Fiber& f = *g_current;
  Block& b = *f.block;
  if (b.barrier_arrived > 0 && !same_site(site, b.barrier_site)) {
    fail("__syncthreads at %s:%d reached by %s while other threads of its block wait at "
         "__syncthreads at %s:%d", site.file, site.line, describe(f).c_str(),
         b.barrier_site.file, b.barrier_site.line);
  }
  char* sync = &b.barrier_sync[b.barrier_generation & 1];
  tsan_release(sync);
  b.barrier_site = site;
  if (++b.barrier_arrived == static_cast<int>(b.fibers.size())) {
    b.barrier_arrived = 0;
    ++b.barrier_generation;
    for (Fiber* other : b.fibers) {
      if (other->state == State::kBarrier) other->state = State::kReady;
    }
  } else {
    wait(State::kBarrier, site);
  }
  tsan_acquire(sync);
}

void trap(Site site) {
  std::fprintf(stderr, "cuda_emu: a thread trapped at %s:%d (launch %d)\n", site.file, site.line,
               g_launches);
  g_grid->trapped = true;
  wait(State::kTrapped, site);
  __builtin_trap();  // never resumed
}

int sticky_fault() { return g_sticky_fault; }

void grid_sync(Site site) {
  Grid& g = *g_grid;
  Fiber& f = *g_current;
  if (!g.launch->cooperative) {
    fail("grid.sync() at %s:%d in a launch that is not cooperative", site.file, site.line);
  }
  if (g.grid_arrived > 0 && !same_site(site, g.grid_site)) {
    fail("grid.sync at %s:%d reached by %s while others wait at grid.sync at %s:%d", site.file,
         site.line, describe(f).c_str(), g.grid_site.file, g.grid_site.line);
  }
  char* sync = &g.grid_sync_objects[g.grid_generation & 1];
  tsan_release(sync);
  g.grid_site = site;
  if (++g.grid_arrived == g.threads) {
    g.grid_arrived = 0;
    ++g.grid_generation;
    for (Fiber* other : *g.running) {
      if (other->state == State::kGrid) other->state = State::kReady;
    }
  } else {
    wait(State::kGrid, site);
  }
  tsan_acquire(sync);
}

namespace {

// Fills c.result once every lane of the mask has arrived.
void complete(Collective& c, int warp_base, const std::vector<Fiber*>& block_fibers) {
  switch (c.op) {
    case WarpOp::kShuffle:
      for (int lane = 0; lane < kWarpSize; ++lane) {
        if (!(c.mask >> lane & 1u)) continue;
        const int source = c.in[lane].source;
        const bool defined = source >= 0 && source < kWarpSize && (c.mask >> source & 1u);
        // Reading a lane outside the mask is undefined on a GPU: poison.
        c.result[lane] = defined ? c.in[source].value : ~std::uint64_t(0);
      }
      break;
    case WarpOp::kBallot: {
      std::uint64_t votes = 0;
      for (int lane = 0; lane < kWarpSize; ++lane) {
        if ((c.mask >> lane & 1u) && c.in[lane].value) votes |= std::uint64_t(1) << lane;
      }
      for (std::uint64_t& r : c.result) r = votes;
      break;
    }
    case WarpOp::kUniform:
      for (int lane = 1; lane < kWarpSize; ++lane) {
        if (c.in[lane].value != c.in[0].value || c.in[lane].value2 != c.in[0].value2) {
          fail("warp collective at %s:%d: lane %d passed pointer 0x%llx and ldm %llu, lane 0 "
               "0x%llx and %llu (they must agree)", c.site.file, c.site.line, lane,
               static_cast<unsigned long long>(c.in[lane].value),
               static_cast<unsigned long long>(c.in[lane].value2),
               static_cast<unsigned long long>(c.in[0].value),
               static_cast<unsigned long long>(c.in[0].value2));
        }
      }
      break;
    case WarpOp::kMma: {
      // D = A (16x8) * B (8x16) + C, TF32 inputs (low 13 mantissa bits
      // ignored, as the tensor cores do), float sums.
      const FragmentSlot* la = fragment_layout(16, 8);
      const FragmentSlot* lb = fragment_layout(8, 16);
      const FragmentSlot* lc = fragment_layout(16, 16);
      float a[16][8], b[8][16], acc[16][16];
      auto tf32 = [](float v) {
        std::uint32_t bits;
        std::memcpy(&bits, &v, 4);
        bits &= ~0x1fffu;
        std::memcpy(&v, &bits, 4);
        return v;
      };
      for (int lane = 0; lane < kWarpSize; ++lane) {
        for (int t = 0; t < 4; ++t) {
          const FragmentSlot sa = la[lane * 4 + t], sb = lb[lane * 4 + t];
          a[sa.row][sa.col] = tf32(c.in[lane].fragments[1][t]);
          b[sb.row][sb.col] = tf32(c.in[lane].fragments[2][t]);
        }
        for (int t = 0; t < 8; ++t) {
          const FragmentSlot sc = lc[lane * 8 + t];
          acc[sc.row][sc.col] = c.in[lane].fragments[3][t];
        }
      }
      for (int i = 0; i < 16; ++i) {
        for (int j = 0; j < 16; ++j) {
          float sum = acc[i][j];
          for (int k = 0; k < 8; ++k) sum += a[i][k] * b[k][j];
          acc[i][j] = sum;
        }
      }
      for (int lane = 0; lane < kWarpSize; ++lane) {
        for (int t = 0; t < 8; ++t) {
          const FragmentSlot sc = lc[lane * 8 + t];
          c.in[lane].fragments[0][t] = acc[sc.row][sc.col];
        }
      }
      break;
    }
  }
  for (int lane = 0; lane < kWarpSize; ++lane) {
    if (!(c.mask >> lane & 1u)) continue;
    Fiber* f = block_fibers[warp_base + lane];
    if (f->state == State::kWarp) f->state = State::kReady;
  }
}

}  // namespace

std::uint64_t warp_collective(unsigned mask, WarpOp op, const LaneInput& in, Site site) {
  Fiber& f = *g_current;
  Block& b = *f.block;
  const int lane = f.linear % kWarpSize;
  const int warp = f.linear / kWarpSize;
  if (!(mask >> lane & 1u)) {
    fail("warp collective at %s:%d: %s (lane %d) is not in its mask 0x%08x", site.file, site.line,
         describe(f).c_str(), lane, mask);
  }
  Collective* const slots = &b.collectives[warp * kMaxCollectives];
  Collective* c = nullptr;
  for (int i = 0; i < kMaxCollectives && c == nullptr; ++i) {
    Collective& candidate = slots[i];
    if (!candidate.in_use || candidate.arrived == candidate.mask) continue;  // free or complete
    if (candidate.mask & mask) {
      if (candidate.mask != mask || candidate.op != op || !same_site(candidate.site, site)) {
        fail("warp collective at %s:%d with mask 0x%08x reached by lane %d of warp %d while "
             "lanes wait at %s:%d with mask 0x%08x", site.file, site.line, mask, lane, warp,
             candidate.site.file, candidate.site.line, candidate.mask);
      }
      c = &candidate;
    }
  }
  for (int i = 0; i < kMaxCollectives && c == nullptr; ++i) {
    if (!slots[i].in_use) c = &slots[i];
  }
  if (c == nullptr) {
    fail("more than %d warp collectives in progress in warp %d", kMaxCollectives, warp);
  }
  if (!c->in_use) {
    *c = Collective();
    c->in_use = true;
    c->mask = mask;
    c->op = op;
    c->site = site;
    c->unread = static_cast<unsigned>(__builtin_popcount(mask));
  }
  c->in[lane] = in;
  c->arrived |= 1u << lane;
  f.collective = c;
  if (c->arrived == mask) {
    complete(*c, warp * kWarpSize, b.fibers);
  } else {
    wait(State::kWarp, site);
  }
  const std::uint64_t result = c->result[lane];
  f.collective = nullptr;
  if (--c->unread == 0) c->in_use = false;
  return result;
}

const FragmentSlot* fragment_layout(int rows, int cols) {
  static std::map<int, std::vector<FragmentSlot>> layouts;
  auto& slots = layouts[rows * 1000 + cols];
  if (slots.empty()) {
    for (int r = 0; r < rows; ++r) {
      for (int c = 0; c < cols; ++c) slots.push_back({r, c});
    }
    std::mt19937_64 rng(seed() * 7919 + rows * 31 + cols);
    std::shuffle(slots.begin(), slots.end(), rng);
  }
  return slots.data();
}

void fail(const char* format, ...) {
  std::fprintf(stderr, "cuda_emu: error: ");
  va_list args;
  va_start(args, format);
  std::vfprintf(stderr, format, args);
  va_end(args);
  std::fprintf(stderr, " (launch %d)\n", g_launches);
  std::fflush(stderr);
  std::_Exit(3);
}

// ----- launches ----------------------------------------------------------------------

int multiprocessors() {
  const char* text = std::getenv("CUDA_EMU_SMS");
  return text ? std::max(1, std::atoi(text)) : kDeviceMultiprocessors;
}

void set_max_dynamic_shared(const void* kernel, int bytes) { g_max_dynamic_shared[kernel] = bytes; }

void note_host_query() { ++g_host_queries; }
int host_queries() { return g_host_queries; }
long long threads_launched() { return g_threads_launched; }
long long blocks_launched() { return g_blocks_launched; }

int occupancy(const void*, int block_threads, std::size_t dynamic_shared_bytes) {
  if (block_threads <= 0) return 0;
  const int by_threads = kMaxThreadsPerSM / block_threads;
  const int by_shared = dynamic_shared_bytes == 0
                            ? kMaxBlocksPerSM
                            : static_cast<int>(kSharedBytesPerSM / dynamic_shared_bytes);
  return std::min({by_threads, by_shared, kMaxBlocksPerSM});
}

int launch(const Launch& l) {
  ++g_launches;
  if (g_sticky_fault != 0) return g_sticky_fault;
  const long long threads = 1LL * l.block.x * l.block.y * l.block.z;
  const long long blocks = 1LL * l.grid.x * l.grid.y * l.grid.z;
  if (threads <= 0 || threads > 1024 || l.block.z > 64 || blocks <= 0 || l.grid.y > 65535 ||
      l.grid.z > 65535) {
    return cudaErrorInvalidConfiguration;
  }
  const auto limit = g_max_dynamic_shared.find(l.kernel);
  const std::size_t allowed =
      limit == g_max_dynamic_shared.end() ? kDefaultSharedBytes : limit->second;
  if (l.dynamic_shared_bytes > allowed) return cudaErrorInvalidValue;
  if (l.cooperative &&
      blocks > 1LL * occupancy(l.kernel, static_cast<int>(threads), l.dynamic_shared_bytes) *
                   multiprocessors()) {
    return cudaErrorCooperativeLaunchTooLarge;
  }

  g_threads_launched += threads * blocks;
  g_blocks_launched += blocks;

  // The wmma layouts are built here, on the host's thread: the fibers only read
  // them (ThreadSanitizer then sees the launch order them after the writes).
  fragment_layout(16, 8);
  fragment_layout(8, 16);
  fragment_layout(16, 16);

  Grid grid;
  grid.launch = &l;
  grid.block_dim = {l.block.x, l.block.y, l.block.z};
  grid.grid_dim = {l.grid.x, l.grid.y, l.grid.z};
  grid.threads = static_cast<int>(threads * blocks);
  grid.rng.seed(seed() * 1000003 + g_launches);
  g_grid = &grid;
  std::vector<uint3> coordinates;
  for (unsigned z = 0; z < l.grid.z; ++z) {
    for (unsigned y = 0; y < l.grid.y; ++y) {
      for (unsigned x = 0; x < l.grid.x; ++x) coordinates.push_back({x, y, z});
    }
  }
  std::shuffle(coordinates.begin(), coordinates.end(), grid.rng);
  if (l.cooperative) {
    std::thread([&] { run_blocks(coordinates); }).join();
  } else {
    for (const uint3& c : coordinates) {
      std::thread([&] { run_blocks({c}); }).join();
      if (grid.trapped) break;
    }
  }
  if (grid.trapped) g_sticky_fault = cudaErrorLaunchFailure;
  tsan_acquire(&grid.done_sync);
  g_grid = nullptr;
  return cudaSuccess;
}

}  // namespace cuda_emu

// ----- the runtime API -------------------------------------------------------------------

namespace {
cudaError_t g_last_error = cudaSuccess;
}

cudaError_t cuda_emu_record(int error) {
  if (error != cudaSuccess) g_last_error = static_cast<cudaError_t>(error);
  return static_cast<cudaError_t>(error);
}

cudaError_t cudaGetLastError() {
  const cudaError_t e = g_last_error;
  g_last_error = cudaSuccess;
  return e;
}

cudaError_t cudaPeekAtLastError() { return g_last_error; }

const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDeviceFunction: return "invalid device function";
    case cudaErrorCooperativeLaunchTooLarge: return "too many blocks in cooperative launch";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
  }
  return "unknown error";
}

cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}

cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attribute, int device) {
  cuda_emu::note_host_query();
  if (device != 0) return cuda_emu_record(cudaErrorInvalidValue);
  switch (attribute) {
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = cuda_emu::kDefaultSharedBytes; break;
    case cudaDevAttrMultiProcessorCount: *value = cuda_emu::multiprocessors(); break;
    case cudaDevAttrCooperativeLaunch: *value = 1; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = cuda_emu::kOptinSharedBytes; break;
    default: return cuda_emu_record(cudaErrorInvalidValue);
  }
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  cuda_emu::note_host_query();
  if (device != 0) return cuda_emu_record(cudaErrorInvalidValue);
  *prop = {};
  std::snprintf(prop->name, sizeof(prop->name), "cuda_emu (CPU)");
  prop->major = 9;
  prop->minor = 0;
  prop->multiProcessorCount = cuda_emu::multiprocessors();
  prop->sharedMemPerBlock = cuda_emu::kDefaultSharedBytes;
  prop->sharedMemPerBlockOptin = cuda_emu::kOptinSharedBytes;
  return cudaSuccess;
}

cudaError_t cudaRuntimeGetVersion(int* version) {
  *version = 0;
  return cudaSuccess;
}

cudaError_t cudaDriverGetVersion(int* version) {
  *version = 0;
  return cudaSuccess;
}

// Asynchronous faults surface here (and stay: cuda_emu::trap).
cudaError_t cudaDeviceSynchronize() { return cuda_emu_record(cuda_emu::sticky_fault()); }
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cuda_emu_record(cuda_emu::sticky_fault()); }

cudaError_t cudaMallocAsync(void** p, std::size_t bytes, cudaStream_t) {
  *p = bytes == 0 ? nullptr : std::malloc(bytes);
  if (bytes != 0 && *p == nullptr) return cuda_emu_record(cudaErrorMemoryAllocation);
  if (*p != nullptr) std::memset(*p, 0xff, bytes);  // poisoned, as the outputs of the drivers
  return cudaSuccess;
}

cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t* pool, int device) {
  if (device != 0) return cuda_emu_record(cudaErrorInvalidValue);
  static int the_pool;
  *pool = reinterpret_cast<cudaMemPool_t>(&the_pool);
  return cudaSuccess;
}

cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t pool, cudaMemPoolAttr, void* value) {
  return cuda_emu_record(pool == nullptr || value == nullptr ? cudaErrorInvalidValue : cudaSuccess);
}

cudaError_t cudaFreeAsync(void* p, cudaStream_t) {
  std::free(p);
  return cudaSuccess;
}

cudaError_t cudaFuncGetName(const char** name, const void* kernel) {
  Dl_info info;
  if (name == nullptr) return cuda_emu_record(cudaErrorInvalidValue);
  if (dladdr(kernel, &info) == 0 || info.dli_sname == nullptr || info.dli_saddr != kernel) {
    return cuda_emu_record(cudaErrorInvalidDeviceFunction);
  }
  *name = info.dli_sname;
  return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void* p, int value, std::size_t bytes, cudaStream_t) {
  std::memset(p, value, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind,
                            cudaStream_t) {
  std::memmove(dst, src, bytes);
  return cudaSuccess;
}
