// Stand-in for <mma.h>: wmma TF32 m16n16k8 fragments, emulated per warp (see
// cuda_emu.h). Loads and stores are rendezvous of the whole warp that check
// the pointer and ldm; each lane then moves its own elements, in the seeded
// scrambled order of cuda_emu::fragment_layout. mma_sync runs in the runtime.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "cuda_emu.h"

namespace nvcuda::wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
namespace precision {
struct tf32 {};
}  // namespace precision
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
  static_assert(M == 16 && N == 16 && K == 8, "the emulator has m16n16k8 only");
  static_assert(std::is_same_v<T, precision::tf32> || std::is_same_v<T, float>,
                "the emulator has TF32 inputs and float accumulators only");
  static constexpr int kRows = std::is_same_v<Use, matrix_b> ? K : M;
  static constexpr int kCols = std::is_same_v<Use, matrix_a> ? K : N;
  static constexpr int num_elements = kRows * kCols / cuda_emu::kWarpSize;
  float x[num_elements];
};

inline float __float_to_tf32(float v) {
  // Round to nearest, ties away from zero, to 10 mantissa bits (cvt.rna.tf32.f32).
  std::uint32_t bits;
  std::memcpy(&bits, &v, 4);
  if ((bits & 0x7f800000u) != 0x7f800000u) bits = (bits + 0x1000u) & ~0x1fffu;
  std::memcpy(&v, &bits, 4);
  return v;
}

namespace detail {

// The warp agrees on the pointer and ldm; the pointer is 256-bit aligned and
// ldm a multiple of 16 bytes, as the wmma documentation requires.
inline void check_access(const void* p, unsigned ldm, const char* what, const char* file,
                         int line) {
  if (reinterpret_cast<std::uintptr_t>(p) % 32 != 0) {
    cuda_emu::fail("%s at %s:%d: pointer %p is not 32-byte aligned", what, file, line, p);
  }
  if (ldm * sizeof(float) % 16 != 0) {
    cuda_emu::fail("%s at %s:%d: ldm %u is not a multiple of 16 bytes", what, file, line, ldm);
  }
  cuda_emu::LaneInput in;
  in.value = reinterpret_cast<std::uintptr_t>(p);
  in.value2 = ldm;
  cuda_emu::warp_collective(0xffffffffu, cuda_emu::WarpOp::kUniform, in, {file, line});
}

template <typename Frag, bool kRowMajor>
void move(Frag& f, float* base, unsigned ldm, bool load) {
  const cuda_emu::FragmentSlot* slots = cuda_emu::fragment_layout(Frag::kRows, Frag::kCols);
  const int lane = cuda_emu::lane_id();
  for (int t = 0; t < Frag::num_elements; ++t) {
    const cuda_emu::FragmentSlot s = slots[lane * Frag::num_elements + t];
    float* element = kRowMajor ? base + s.row * ldm + s.col : base + s.col * ldm + s.row;
    if (load) {
      f.x[t] = *element;
    } else {
      *element = f.x[t];
    }
  }
}

}  // namespace detail

template <typename Use, int M, int N, int K, typename T, typename Layout>
void load_matrix_sync(fragment<Use, M, N, K, T, Layout>& f, const float* p, unsigned ldm,
                      const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  static_assert(!std::is_same_v<Use, accumulator>, "accumulators load with a layout_t");
  detail::check_access(p, ldm, "wmma::load_matrix_sync", file, line);
  detail::move<fragment<Use, M, N, K, T, Layout>, std::is_same_v<Layout, row_major>>(
      f, const_cast<float*>(p), ldm, true);
}

template <int M, int N, int K>
void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, float>& f, unsigned ldm,
                       layout_t layout, const char* file = __builtin_FILE(),
                       int line = __builtin_LINE()) {
  detail::check_access(p, ldm, "wmma::store_matrix_sync", file, line);
  using Frag = fragment<accumulator, M, N, K, float>;
  auto& mutable_f = const_cast<Frag&>(f);
  if (layout == mem_row_major) {
    detail::move<Frag, true>(mutable_f, p, ldm, false);
  } else {
    detail::move<Frag, false>(mutable_f, p, ldm, false);
  }
}

template <typename Use, int M, int N, int K, typename T, typename Layout>
void fill_fragment(fragment<Use, M, N, K, T, Layout>& f, float v) {
  for (float& e : f.x) e = v;
}

template <int M, int N, int K, typename LayoutA, typename LayoutB>
void mma_sync(fragment<accumulator, M, N, K, float>& d,
              const fragment<matrix_a, M, N, K, precision::tf32, LayoutA>& a,
              const fragment<matrix_b, M, N, K, precision::tf32, LayoutB>& b,
              const fragment<accumulator, M, N, K, float>& c,
              const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  cuda_emu::LaneInput in;
  in.fragments[0] = d.x;
  in.fragments[1] = const_cast<float*>(a.x);
  in.fragments[2] = const_cast<float*>(b.x);
  in.fragments[3] = const_cast<float*>(c.x);
  cuda_emu::warp_collective(0xffffffffu, cuda_emu::WarpOp::kMma, in, {file, line});
}

}  // namespace nvcuda::wmma
