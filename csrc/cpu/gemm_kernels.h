// Internal to gemm.cpp and conv.cpp: SIMD vectors, block sizes and the
// register-blocked micro-kernels. Which vectors exist is decided here, at compile time, from the
// target macros of the instruction set being compiled (see fusednn/gemm.h and fusednn/cpu_isa.h).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "fusednn/cpu_caches.h"
#include "fusednn/cpu_isa.h"

// Without AVX2, GCC and Clang vector extensions give 128-bit SIMD on the two
// baselines that always have it: SSE2 (x86-64) and NEON (64-bit ARM).
#if !defined(__AVX512F__) && !defined(__AVX2__) && defined(__GNUC__) && \
    (defined(__SSE2__) || defined(__aarch64__)) && defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
#define FUSEDNN_GEMM_VEC128 1
#endif
#endif

#if defined(__AVX512F__) || defined(__AVX2__)
// GCC 12 flags the deliberately undefined pass-through operand inside its own
// AVX-512 shuffle intrinsics as (maybe) uninitialised; the warning points into
// the header, so it is silenced for the header only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#endif

FUSEDNN_CPU_BEGIN
namespace gemm_detail {

// A SIMD register of T: kLanes elements with zero/load/store/broadcast/fma.
template <typename T>
struct Vec;

#if defined(__AVX512F__)
inline constexpr const char* kSimdPath = "avx512";

template <>
struct Vec<float> {
  using Reg = __m512;
  static constexpr int kLanes = 16;
  static Reg zero() { return _mm512_setzero_ps(); }
  static Reg load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, Reg v) { _mm512_storeu_ps(p, v); }
  static Reg broadcast(float x) { return _mm512_set1_ps(x); }
  static Reg fma(Reg a, Reg b, Reg c) { return _mm512_fmadd_ps(a, b, c); }
  static Reg mul(Reg a, Reg b) { return _mm512_mul_ps(a, b); }
  static Reg add(Reg a, Reg b) { return _mm512_add_ps(a, b); }
  // b where either is NaN, so relu as max(0, v) keeps a NaN v.
  static Reg max(Reg a, Reg b) { return _mm512_max_ps(a, b); }
  // r[i][j] -> r[j][i] for a 16 x 16 block held in 16 registers.
  static void transpose(Reg r[kLanes]) {
    Reg t[16];
    for (int i = 0; i < 8; ++i) {
      t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
      t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    // Within each 128-bit lane q, u[4i + j] holds column 4q + j of rows 4i..4i+3.
    Reg u[16];
    for (int i = 0; i < 4; ++i) {
      u[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
      u[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
      u[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
      u[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
    for (int j = 0; j < 4; ++j) {
      const Reg v_lo = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x88);
      const Reg v_hi = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xDD);
      const Reg w_lo = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x88);
      const Reg w_hi = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xDD);
      r[j] = _mm512_shuffle_f32x4(v_lo, w_lo, 0x88);
      r[4 + j] = _mm512_shuffle_f32x4(v_hi, w_hi, 0x88);
      r[8 + j] = _mm512_shuffle_f32x4(v_lo, w_lo, 0xDD);
      r[12 + j] = _mm512_shuffle_f32x4(v_hi, w_hi, 0xDD);
    }
  }
};

template <>
struct Vec<double> {
  using Reg = __m512d;
  static constexpr int kLanes = 8;
  static Reg zero() { return _mm512_setzero_pd(); }
  static Reg load(const double* p) { return _mm512_loadu_pd(p); }
  static void store(double* p, Reg v) { _mm512_storeu_pd(p, v); }
  static Reg broadcast(double x) { return _mm512_set1_pd(x); }
  static Reg fma(Reg a, Reg b, Reg c) { return _mm512_fmadd_pd(a, b, c); }
  static Reg mul(Reg a, Reg b) { return _mm512_mul_pd(a, b); }
  static Reg add(Reg a, Reg b) { return _mm512_add_pd(a, b); }
  static Reg max(Reg a, Reg b) { return _mm512_max_pd(a, b); }
  // r[i][j] -> r[j][i] for an 8 x 8 block held in 8 registers.
  static void transpose(Reg r[kLanes]) {
    // Within each 128-bit lane q, t[2i + j] holds column 2q + j of rows 2i, 2i+1.
    Reg t[8];
    for (int i = 0; i < 4; ++i) {
      t[2 * i] = _mm512_unpacklo_pd(r[2 * i], r[2 * i + 1]);
      t[2 * i + 1] = _mm512_unpackhi_pd(r[2 * i], r[2 * i + 1]);
    }
    for (int j = 0; j < 2; ++j) {
      const Reg v_lo = _mm512_shuffle_f64x2(t[j], t[2 + j], 0x88);
      const Reg v_hi = _mm512_shuffle_f64x2(t[j], t[2 + j], 0xDD);
      const Reg w_lo = _mm512_shuffle_f64x2(t[4 + j], t[6 + j], 0x88);
      const Reg w_hi = _mm512_shuffle_f64x2(t[4 + j], t[6 + j], 0xDD);
      r[j] = _mm512_shuffle_f64x2(v_lo, w_lo, 0x88);
      r[2 + j] = _mm512_shuffle_f64x2(v_hi, w_hi, 0x88);
      r[4 + j] = _mm512_shuffle_f64x2(v_lo, w_lo, 0xDD);
      r[6 + j] = _mm512_shuffle_f64x2(v_hi, w_hi, 0xDD);
    }
  }
};

// 8 x 2 accumulators + 2 rows of B + one broadcast of A in the 32 zmm
// registers. 16 independent FMA chains cover the FMA latency (4 cycles x 2
// pipes); 12 or 14 rows would fit too but measured 3-10% slower on Zen 5, not
// least because M of a convolution or an LSTM step (batch x positions) is
// usually a multiple of 8 and so splits into whole tiles.
inline constexpr int kMicroRows = 8;
inline constexpr int kMicroVecs = 2;

#elif defined(__AVX2__)
inline constexpr const char* kSimdPath = "avx2";

template <>
struct Vec<float> {
  using Reg = __m256;
  static constexpr int kLanes = 8;
  static Reg zero() { return _mm256_setzero_ps(); }
  static Reg load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, Reg v) { _mm256_storeu_ps(p, v); }
  static Reg broadcast(float x) { return _mm256_set1_ps(x); }
  static Reg fma(Reg a, Reg b, Reg c) { return _mm256_fmadd_ps(a, b, c); }
  static Reg mul(Reg a, Reg b) { return _mm256_mul_ps(a, b); }
  static Reg add(Reg a, Reg b) { return _mm256_add_ps(a, b); }
  // b where either is NaN, so relu as max(0, v) keeps a NaN v.
  static Reg max(Reg a, Reg b) { return _mm256_max_ps(a, b); }
  // r[i][j] -> r[j][i] for an 8 x 8 block held in 8 registers.
  static void transpose(Reg r[kLanes]) {
    Reg t[8];
    for (int i = 0; i < 4; ++i) {
      t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
      t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    // Within each 128-bit lane q, u[4i + j] holds column 4q + j of rows 4i..4i+3.
    Reg u[8];
    for (int i = 0; i < 2; ++i) {
      u[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
      u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
      u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
      u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
    for (int j = 0; j < 4; ++j) {
      r[j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x20);
      r[4 + j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x31);
    }
  }
};

template <>
struct Vec<double> {
  using Reg = __m256d;
  static constexpr int kLanes = 4;
  static Reg zero() { return _mm256_setzero_pd(); }
  static Reg load(const double* p) { return _mm256_loadu_pd(p); }
  static void store(double* p, Reg v) { _mm256_storeu_pd(p, v); }
  static Reg broadcast(double x) { return _mm256_set1_pd(x); }
  static Reg fma(Reg a, Reg b, Reg c) { return _mm256_fmadd_pd(a, b, c); }
  static Reg mul(Reg a, Reg b) { return _mm256_mul_pd(a, b); }
  static Reg add(Reg a, Reg b) { return _mm256_add_pd(a, b); }
  static Reg max(Reg a, Reg b) { return _mm256_max_pd(a, b); }
  // r[i][j] -> r[j][i] for a 4 x 4 block held in 4 registers.
  static void transpose(Reg r[kLanes]) {
    // Within each 128-bit lane q, t[2i + j] holds column 2q + j of rows 2i, 2i+1.
    Reg t[4];
    for (int i = 0; i < 2; ++i) {
      t[2 * i] = _mm256_unpacklo_pd(r[2 * i], r[2 * i + 1]);
      t[2 * i + 1] = _mm256_unpackhi_pd(r[2 * i], r[2 * i + 1]);
    }
    for (int j = 0; j < 2; ++j) {
      r[j] = _mm256_permute2f128_pd(t[j], t[2 + j], 0x20);
      r[2 + j] = _mm256_permute2f128_pd(t[j], t[2 + j], 0x31);
    }
  }
};

// 16 ymm registers: 6 x 2 accumulators + 2 rows of B + one broadcast of A.
inline constexpr int kMicroRows = 6;
inline constexpr int kMicroVecs = 2;

#elif defined(FUSEDNN_GEMM_VEC128)
inline constexpr const char* kSimdPath = "vec128";

// The vector types, spelled out: GCC drops vector_size from a dependent type.
template <typename T>
struct Vector128;
template <>
struct Vector128<float> {
  typedef float type __attribute__((vector_size(16)));
};
template <>
struct Vector128<double> {
  typedef double type __attribute__((vector_size(16)));
};

template <typename T>
struct Vec {
  using Reg = typename Vector128<T>::type;
  static constexpr int kLanes = int(16 / sizeof(T));
  static Reg zero() { return Reg{}; }
  static Reg load(const T* p) {
    Reg v;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
  static void store(T* p, Reg v) { std::memcpy(p, &v, sizeof v); }
  static Reg broadcast(T x) {
    if constexpr (kLanes == 4) {
      return Reg{x, x, x, x};
    } else {
      return Reg{x, x};
    }
  }
  // One fused multiply-add where the target has it (NEON; SSE2 has none).
  static Reg fma(Reg a, Reg b, Reg c) { return a * b + c; }
  static Reg mul(Reg a, Reg b) { return a * b; }
  static Reg add(Reg a, Reg b) { return a + b; }
  // b where either is NaN (a > b is false there), selected bitwise: a vector
  // ?: is not in every compiler's extension.
  static Reg max(Reg a, Reg b) {
    const auto a_greater = a > b;  // lanes of all ones or all zeros
    using Bits = decltype(a_greater);
    return reinterpret(((Bits)a & a_greater) | ((Bits)b & ~a_greater));
  }
  // r[i][j] -> r[j][i] for a kLanes x kLanes block held in kLanes registers.
  static void transpose(Reg r[kLanes]) {
    if constexpr (kLanes == 4) {
      const Reg t0 = __builtin_shufflevector(r[0], r[1], 0, 4, 1, 5);
      const Reg t1 = __builtin_shufflevector(r[0], r[1], 2, 6, 3, 7);
      const Reg t2 = __builtin_shufflevector(r[2], r[3], 0, 4, 1, 5);
      const Reg t3 = __builtin_shufflevector(r[2], r[3], 2, 6, 3, 7);
      r[0] = __builtin_shufflevector(t0, t2, 0, 1, 4, 5);
      r[1] = __builtin_shufflevector(t0, t2, 2, 3, 6, 7);
      r[2] = __builtin_shufflevector(t1, t3, 0, 1, 4, 5);
      r[3] = __builtin_shufflevector(t1, t3, 2, 3, 6, 7);
    } else {
      const Reg t0 = __builtin_shufflevector(r[0], r[1], 0, 2);
      r[1] = __builtin_shufflevector(r[0], r[1], 1, 3);
      r[0] = t0;
    }
  }

 private:
  template <typename Bits>
  static Reg reinterpret(Bits bits) {
    Reg v;
    std::memcpy(&v, &bits, sizeof v);
    return v;
  }
};

// 16 registers (SSE2; NEON has 32): 6 x 2 accumulators + 2 rows of B + one
// broadcast of A, as with AVX2.
inline constexpr int kMicroRows = 6;
inline constexpr int kMicroVecs = 2;

#else
inline constexpr const char* kSimdPath = "portable";

// One element per "register"; the 4 x 8 tile of scalars is what the
// auto-vectoriser turns into whatever SIMD the target has.
template <typename T>
struct Vec {
  using Reg = T;
  static constexpr int kLanes = 1;
  static Reg zero() { return T(0); }
  static Reg load(const T* p) { return *p; }
  static void store(T* p, Reg v) { *p = v; }
  static Reg broadcast(T x) { return x; }
  static Reg fma(Reg a, Reg b, Reg c) { return a * b + c; }
  static Reg mul(Reg a, Reg b) { return a * b; }
  static Reg add(Reg a, Reg b) { return a + b; }
  static Reg max(Reg a, Reg b) { return a > b ? a : b; }  // b where either is NaN
  static void transpose(Reg*) {}  // a 1 x 1 block
};

inline constexpr int kMicroRows = 4;
inline constexpr int kMicroVecs = 8;
#endif

// v, held in a register. GCC otherwise folds a load that several FMAs use
// into each of them as a memory operand, which leaves a kernel with few rows
// of A bound by the load ports (4 rows: 12 loads per 8 FMAs, 62% of the FMA
// peak measured on Zen 3; 95% with B held in registers).
template <typename Reg>
inline Reg in_register(Reg v) {
#if defined(__GNUC__) && defined(__AVX512F__)
  asm("" : "+v"(v));
#elif defined(__GNUC__) && defined(__AVX2__)
  asm("" : "+x"(v));
#elif defined(FUSEDNN_GEMM_VEC128) && defined(__SSE2__)
  asm("" : "+x"(v));
#elif defined(FUSEDNN_GEMM_VEC128) && defined(__aarch64__)
  asm("" : "+w"(v));
#endif
  return v;
}

// Block sizes for one element type.
//   MR x NR  the register tile of C (NR = NV SIMD vectors)
//   KC       depth of a packed panel: an NR x KC sliver of B (KC*NR*sizeof(T))
//   MC       rows of the packed A block (MC*KC*sizeof(T))
//   NC       columns of the packed B panel (KC*NC*sizeof(T))
// MR and NR are fixed per instruction set; KC, MC and NC follow this CPU's
// caches (cache_blocks below). They are upper bounds: gemm.cpp splits each
// dimension into equal blocks no larger than these so that no tiny remainder
// block is left over.
template <typename T>
struct Blocking {
  static constexpr int MR = kMicroRows;
  static constexpr int NV = kMicroVecs;
  static constexpr int NR = NV * Vec<T>::kLanes;
};

struct CacheBlocks {
  std::int64_t kc, mc, nc;
  std::int64_t panel_bytes;  // half of L2 where the B panel stays there, else 0

  // The B panel (KC x NC) stays in L2, so the tiles go along the rows of C
  // (gemm.cpp's gemm_serial): see cache_blocks.
  bool panel_in_l2() const { return panel_bytes > 0; }
};

// Below this many columns a B panel in L2 would make A's packing, repeated
// once per panel, cost more than 16 / 256 (kPackCostInMacs over NC): 6%.
inline constexpr std::int64_t kMinPanelColumnsInL2 = 256;

// KC, MC and NC from the cache sizes read at run time (fusednn/cpu_caches.h):
//   KC: the B sliver fills L1 (KC = L1 / (NR * sizeof(T))), at least 256 and at
//       most 512. Each K block costs one more load and store of the whole tile
//       of C. On the Xeon with 48 KiB L1 and 2 MiB L2 (AVX-512, quiet, medians
//       of 15, 3 alternating runs each) KC = 384 against the earlier fixed 256:
//       1 thread 1024^3 +1-2%, 2048^3 +5-10%, 7744x64x288 (a convolution whose K
//       becomes one block instead of two) +15%; 2 threads +0-1%, +5%, +14%.
//   MC: the A block takes a quarter of L2 (the rest holds the B panel's
//       slivers in flight and the tiles of C); 336 rows on that Xeon, 168 on
//       Zen 5 (1 MiB L2), where 168 to 336 measured within a few percent.
//   NC: the B panel takes half of L2 where that is at least
//       kMinPanelColumnsInL2 columns (672 on that Xeon, 320 on Zen 5), and the
//       tiles then go along the rows of C: one A sliver (MR x KC, 12 KiB) stays
//       in L1 while the panel's slivers stream from L2. A B sliver of KC = 384
//       is all of a 48 KiB L1, so the other order (each B sliver in L1, A
//       streaming past it) lost it to A and C. On that Xeon (quiet, 6
//       alternating pairs of medians of 15, against NC = 4096 going down the
//       columns) 1 thread: 1024^3 +3.0%, 960x1024x256 +4.5%, 3136x128x1152
//       +3.2%; 2 threads: 1024^3 +3.8%, 4096x256x256 +4.7%, 3136x128x1152
//       +5.6%, A^T (1152x128x3136) +6.8%, 7744x64x288 +1.4%; NC 352 to 672
//       within 1.5%. A shallower K block gets wider panels in the same bytes
//       (panel_columns): splitting N into panels of 672 columns for K = 1
//       (3840x1024x1, bound by writing C) cost 25% in float32, 40% in float64.
//       Otherwise (a small L2: Zen 3's 512 KiB with AVX2's KC of 512, not
//       measured) NC is this core's share of L3, at most 4096, and the tiles
//       go down the columns as before.
template <typename T>
const CacheBlocks& cache_blocks() {
  static const CacheBlocks blocks = [] {
    constexpr std::int64_t MR = Blocking<T>::MR, NR = Blocking<T>::NR;
    constexpr std::int64_t size = sizeof(T);
    const CacheSizes& caches = cache_sizes();
    const std::int64_t kc = std::clamp<std::int64_t>(caches.l1d / (NR * size), 256, 512);
    const std::int64_t mc = std::max(MR, caches.l2 / 4 / (kc * size) / MR * MR);
    // At most 4096 columns, as panel_columns widens to (an L2 reported as 16 MiB,
    // as some virtual machines do, would otherwise exceed it).
    const std::int64_t nc_in_l2 =
        std::min<std::int64_t>(caches.l2 / 2 / (kc * size), 4096) / NR * NR;
    if (nc_in_l2 >= kMinPanelColumnsInL2) {
      return CacheBlocks{kc, mc, nc_in_l2, caches.l2 / 2};
    }
    const std::int64_t nc = std::clamp<std::int64_t>(caches.l3_per_core / (kc * size) / NR * NR,
                                                     4 * NR, 4096 / NR * NR);
    return CacheBlocks{kc, mc, nc, 0};
  }();
  return blocks;
}

// NC for K blocks of at most kc (<= KC): the columns of a B panel that fills
// the same bytes as a KC-deep one, at most 4096.
template <typename T>
std::int64_t panel_columns(std::int64_t kc) {
  constexpr std::int64_t NR = Blocking<T>::NR;
  const CacheBlocks& blocks = cache_blocks<T>();
  if (!blocks.panel_in_l2()) return blocks.nc;
  const std::int64_t columns = blocks.panel_bytes / (std::max<std::int64_t>(kc, 1) * sizeof(T));
  return std::clamp<std::int64_t>(columns / NR * NR, blocks.nc, 4096 / NR * NR);
}

// Where the micro-kernel reads a sliver of op(A) (MR rows x kc) from.
enum class ASource {
  kPacked,    // packed: op(A)(i, k) at a[k * MR + i]
  kStoredMK,  // A itself, stored (M, K) (trans_a false): op(A)(i, k) at a[i * lda + k]
  kStoredKM,  // A itself, stored (K, M) (trans_a true):  op(A)(i, k) at a[k * lda + i]
};

// Where the micro-kernel reads a sliver of op(B) (kc x NR) from.
enum class BSource {
  kPacked,    // packed: op(B)(k, j) at b[k * NR + j]
  kStoredKN,  // B itself, stored (K, N) (trans_b false): op(B)(k, j) at b[k * ldb + j]
};

// C[0:MR, 0:NR] = alpha * op(A)[0:MR, 0:kc] * op(B)[0:kc, 0:NR] + beta * C[0:MR, 0:NR]
//   a, lda   sliver of op(A) as described by AS (lda unused when packed)
//   b, ldb   sliver of op(B) as described by BS (ldb unused when packed)
//   c        row i of the tile at c + i * ldc
// Reading A or B in place skips the packing copy where a sliver is used only
// a few times (gemm.cpp decides); the slivers must then be whole.
// beta == 0 does not read C.
template <typename T, ASource AS, BSource BS>
inline void micro_kernel(std::int64_t kc, const T* __restrict a, std::int64_t lda,
                         const T* __restrict b, std::int64_t ldb, T alpha, T beta,
                         T* __restrict c, std::int64_t ldc) {
  using V = Vec<T>;
  using Reg = typename V::Reg;
  constexpr int MR = Blocking<T>::MR;
  constexpr int NV = Blocking<T>::NV;
  constexpr int L = V::kLanes;
  constexpr int NR = Blocking<T>::NR;
  // Distance between op(A)(i, k) and op(A)(i + 1, k), and between steps of k.
  const std::int64_t a_row = AS == ASource::kStoredMK ? lda : 1;
  const std::int64_t a_step = AS == ASource::kPacked ? MR : AS == ASource::kStoredKM ? lda : 1;
  const std::int64_t b_step = BS == BSource::kPacked ? NR : ldb;

  Reg acc[MR][NV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) acc[i][v] = V::zero();
  }

  // The tile of C is stored (and maybe read) after the loop: fetching its
  // lines now hides their misses behind the multiply-adds (1024^3 float on
  // Zen 3, 1 thread: +9%, 6 of 6 interleaved pairs).
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) __builtin_prefetch(c + i * ldc, 1);
#pragma GCC unroll 4
  for (std::int64_t k = 0; k < kc; ++k) {
    Reg bv[NV];
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) bv[v] = V::load(b + v * L);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const Reg ai = V::broadcast(a[i * a_row]);
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) acc[i][v] = V::fma(ai, bv[v], acc[i][v]);
    }
    a += a_step;
    b += b_step;
  }

  const Reg alpha_v = V::broadcast(alpha);
  if (beta == T(0)) {
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) V::store(c + i * ldc + v * L, V::mul(alpha_v, acc[i][v]));
    }
  } else {
    const Reg beta_v = V::broadcast(beta);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) {
        T* cp = c + i * ldc + v * L;
        V::store(cp, V::fma(alpha_v, acc[i][v], V::mul(beta_v, V::load(cp))));
      }
    }
  }
}

// The micro-kernel over an implicit im2col matrix (convolution without the
// gather copy): op(A) is `segments` blocks of `width` columns, and row i of
// block t is the `width` contiguous values at rows[t * MR + i] (one output
// pixel's input pixel under one kernel tap, or a run of zeros where the tap
// falls in the padding); op(B) is a packed sliver, B(k, j) at b[k * NR + j],
// k = t * width + c. Leaves the MR x NR product in acc (the caller stores it).
template <typename T>
inline void micro_kernel_gathered(std::int64_t segments, std::int64_t width,
                                  const T* const* __restrict rows, const T* __restrict b,
                                  typename Vec<T>::Reg (&acc)[Blocking<T>::MR][Blocking<T>::NV]) {
  using V = Vec<T>;
  using Reg = typename V::Reg;
  constexpr int MR = Blocking<T>::MR;
  constexpr int NV = Blocking<T>::NV;
  constexpr int L = V::kLanes;
  constexpr int NR = Blocking<T>::NR;
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) acc[i][v] = V::zero();
  }
  for (std::int64_t t = 0; t < segments; ++t, rows += MR) {
    const T* a[MR];
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) a[i] = rows[i];
#pragma GCC unroll 4
    for (std::int64_t c = 0; c < width; ++c, b += NR) {
      Reg bv[NV];
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) bv[v] = V::load(b + v * L);
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) {
        const Reg ai = V::broadcast(a[i][c]);
#pragma GCC unroll 16
        for (int v = 0; v < NV; ++v) acc[i][v] = V::fma(ai, bv[v], acc[i][v]);
      }
    }
  }
}

}  // namespace gemm_detail
FUSEDNN_CPU_END
