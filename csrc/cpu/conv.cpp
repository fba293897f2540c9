// conv2d on the CPU, forward and backward, as tiled im2col + GEMM.
//
// The output rows (N*OH*OW pixels, F channels each) are processed in tiles of
// `tile_rows` pixels. For a tile, the matching rows of the virtual im2col
// matrix (KH*KW*C values per pixel, order (kh, kw, c)) are gathered into a
// per-thread workspace small enough to stay in L2, and then
//   forward   y_tile  = col_tile @ w                 (+ bias, activation)
//   filter    dw     += col_tile^T @ dz_tile
//   data      dcol    = dz_tile @ w^T, scattered back into dx (col2im)
// with every product on fusednn::cpu::gemm. The forward mostly gathers
// nothing: the GEMM micro-kernel reads x in place through per-pixel run
// pointers and stores y with the epilogue applied (see
// conv2d_forward_gathered). A 1x1, stride-1, unpadded
// convolution needs no gather: its im2col matrix is x itself. A stride-1
// data gradient (and transposed convolution) is the forward convolution of dz
// with the flipped kernel, through that implicit GEMM, where its padded full
// convolution computes at most 1.25x the output's pixels ('same', and 'valid'
// on large images; on small 'valid' images it is mostly zeros): see
// transposes_by_forward. An earlier forward, which gathered every im2col row,
// had measured no faster that way with 'same' padding.
//
// Threads (OpenMP) take whole tiles (forward) or whole groups of images
// (backward, so that the col2im scatters of two threads never touch the same
// dx image), each calling the GEMM single-threaded; with fewer images than
// threads, or too little work, the tiles run one after another and the GEMM
// splits each product instead. The two are never nested. Kernel gradients are
// summed per thread over fixed ranges of images and reduced in thread order,
// so results do not depend on scheduling.
#include "fusednn/conv.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <vector>

#ifdef FUSEDNN_OPENMP
#include <omp.h>
#endif

#if defined(__AVX512F__)
// GCC 12 flags the undefined pass-through operands inside its own AVX-512
// intrinsics as (maybe) uninitialised; silenced for the header only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#endif

#include "fusednn/gemm.h"
#include "gemm_kernels.h"

FUSEDNN_CPU_BEGIN

namespace {

using Index = std::int64_t;

Index ceil_div(Index a, Index b) { return (a + b - 1) / b; }
Index round_up(Index a, Index b) { return ceil_div(a, b) * b; }

// Bytes of one tile's working set (its im2col rows and its output rows): most
// of a 1-2 MiB L2, so the gathered rows are still cached when the GEMM reads
// them and the output tile when the epilogue runs. Measured on Zen 5 (1 MiB
// L2): 384 KiB to 1.5 MiB are within 10%, the larger end ahead on 3x3 layers
// with 64-128 channels.
constexpr Index kTileBytes = Index(768) << 10;
// Rows per tile never fall below this, however wide the im2col rows are, so
// that each GEMM amortises packing the kernel.
constexpr Index kMinTileRows = 32;
// Below this many multiply-adds per thread, a parallel region costs more than
// it saves; the GEMM decides its own threading for the serial path.
constexpr Index kMinWorkPerThread = Index(1) << 20;

// A 64-byte aligned buffer of `elements` T (std::bad_alloc if there is no memory).
struct AlignedFree {
  void operator()(void* p) const { std::free(p); }
};
template <typename T>
using AlignedBuffer = std::unique_ptr<T, AlignedFree>;

template <typename T>
AlignedBuffer<T> aligned_buffer(Index elements) {
  const std::size_t bytes = std::size_t(round_up(elements * Index(sizeof(T)), 64));
  AlignedBuffer<T> buffer(static_cast<T*>(std::aligned_alloc(64, bytes)));
  if (!buffer) throw std::bad_alloc();
  return buffer;
}

// A growable, 64-byte aligned scratch buffer owned by the calling thread and
// kept between calls (no allocation and no first-touch page faults per call).
// It holds every OpenMP thread's slice and is sized before the parallel
// region, where nothing may throw. Slot 1 is a second buffer, for a routine
// that calls another one which takes slot 0.
template <typename T, int kSlot = 0>
T* workspace(Index elements) {
  thread_local AlignedBuffer<T> data;
  thread_local Index capacity = 0;
  if (elements > capacity) {
    data = aligned_buffer<T>(elements);
    capacity = elements;
  }
  return data.get();
}

int max_threads() {
#ifdef FUSEDNN_OPENMP
  return omp_in_parallel() ? 1 : omp_get_max_threads();
#else
  return 1;
#endif
}

int thread_index() {
#ifdef FUSEDNN_OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

// [begin, end) of part `part` when `count` items are split `parts` ways.
Index split_point(Index count, int parts, int part) { return count * part / parts; }

// Runs body(thread, begin, end) over `units` work units: `threads` OpenMP
// threads with contiguous static ranges, or the calling thread alone.
template <typename Body>
void for_each_range(Index units, int threads, Body body) {
#ifdef FUSEDNN_OPENMP
  if (threads > 1) {
#pragma omp parallel num_threads(threads)
    {
      const int t = thread_index();
      body(t, split_point(units, threads, t), split_point(units, threads, t + 1));
    }
    return;
  }
#endif
  body(0, Index(0), units);
}

// What every routine below needs to know about one conv2d.
struct Plan {
  explicit Plan(const Conv2dShape& shape) : s(shape) {
    pixels = s.OH * s.OW;
    rows = s.N * pixels;
    kcol = s.KH * s.KW * s.C;
    direct = s.KH == 1 && s.KW == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_top == 0 &&
             s.pad_left == 0 && s.OH == s.H && s.OW == s.W;
  }

  // Rows per tile when each row carries `row_elems` values of `elem_bytes`.
  Index tile_rows_for(Index row_elems, Index elem_bytes, Index limit) const {
    const Index by_cache = std::max(kMinTileRows, kTileBytes / (row_elems * elem_bytes));
    const Index rows_cap = std::max<Index>(1, std::min(by_cache, limit));
    // Equal tiles: 1040 rows with a cap of 1000 become two of 520, not 1000 + 40.
    return ceil_div(limit, ceil_div(limit, rows_cap));
  }

  Conv2dShape s;
  Index pixels;   // OH * OW output pixels per image
  Index rows;     // N * OH * OW rows of the im2col matrix
  Index kcol;     // KH * KW * C columns of the im2col matrix
  bool direct;    // im2col(x) == x viewed as (N*H*W, C)
};

// Copies (or zeroes) runs of one fixed length: a kernel row's or one pixel's
// values, often 1, 3 or a few dozen, where a call to memcpy/memset (which the
// compiler makes of a plain loop) would cost more than the copy. With AVX-512:
// whole vectors, then one tail under a mask computed once for all runs.
template <typename T>
class RunCopy {
 public:
#if defined(__AVX512F__)
  explicit RunCopy(Index count)
      : whole_(count / kLanes * kLanes),
        tail_(static_cast<unsigned>((1u << (count - count / kLanes * kLanes)) - 1)) {}
#else
  explicit RunCopy(Index count) : count_(count) {}
#endif

  void copy(T* __restrict dst, const T* __restrict src) const {
#if defined(__AVX512F__)
    for (Index i = 0; i < whole_; i += kLanes) {
      _mm512_storeu_si512(dst + i, _mm512_loadu_si512(src + i));
    }
    if (tail_ != 0) {
      if constexpr (sizeof(T) == 4) {
        const auto mask = static_cast<__mmask16>(tail_);
        _mm512_mask_storeu_epi32(dst + whole_, mask, _mm512_maskz_loadu_epi32(mask, src + whole_));
      } else {
        const auto mask = static_cast<__mmask8>(tail_);
        _mm512_mask_storeu_epi64(dst + whole_, mask, _mm512_maskz_loadu_epi64(mask, src + whole_));
      }
    }
#else
#pragma omp simd
    for (Index i = 0; i < count_; ++i) dst[i] = src[i];
#endif
  }

  // copy() and zero() that may also write up to kSpill elements past the run
  // (zeros from the masked load): for a buffer filled front to back, with
  // kSpill elements of slack at its end, where a plain store of the narrowest
  // vector that holds the tail is much cheaper than a masked store.
  void copy_spilling(T* __restrict dst, const T* __restrict src) const {
#if defined(__AVX512F__) && defined(__AVX512VL__)
    for (Index i = 0; i < whole_; i += kLanes) {
      _mm512_storeu_si512(dst + i, _mm512_loadu_si512(src + i));
    }
    if (tail_ == 0) return;
    T* d = dst + whole_;
    const T* s = src + whole_;
    constexpr bool kFloat = sizeof(T) == 4;
    if (tail_ < (1u << (16 / sizeof(T)))) {  // fits 16 bytes
      const auto mask = static_cast<__mmask8>(tail_);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(d), kFloat ? _mm_maskz_loadu_epi32(mask, s)
                                                             : _mm_maskz_loadu_epi64(mask, s));
    } else if (tail_ < (1u << (32 / sizeof(T)))) {  // fits 32 bytes
      const auto mask = static_cast<__mmask8>(tail_);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(d),
                          kFloat ? _mm256_maskz_loadu_epi32(mask, s)
                                 : _mm256_maskz_loadu_epi64(mask, s));
    } else if constexpr (kFloat) {
      _mm512_storeu_si512(d, _mm512_maskz_loadu_epi32(static_cast<__mmask16>(tail_), s));
    } else {
      _mm512_storeu_si512(d, _mm512_maskz_loadu_epi64(static_cast<__mmask8>(tail_), s));
    }
#else
    copy(dst, src);
#endif
  }

  void zero_spilling(T* dst) const {
#if defined(__AVX512F__)
    const __m512i zeros = _mm512_setzero_si512();
    for (Index i = 0; i < whole_; i += kLanes) _mm512_storeu_si512(dst + i, zeros);
    if (tail_ != 0) _mm512_storeu_si512(dst + whole_, zeros);
#else
    zero(dst);
#endif
  }

  static constexpr Index kSpill = 64 / Index(sizeof(T));

  void zero(T* dst) const {
#if defined(__AVX512F__)
    const __m512i zeros = _mm512_setzero_si512();
    for (Index i = 0; i < whole_; i += kLanes) _mm512_storeu_si512(dst + i, zeros);
    if (tail_ != 0) {
      if constexpr (sizeof(T) == 4) {
        _mm512_mask_storeu_epi32(dst + whole_, static_cast<__mmask16>(tail_), zeros);
      } else {
        _mm512_mask_storeu_epi64(dst + whole_, static_cast<__mmask8>(tail_), zeros);
      }
    }
#else
#pragma omp simd
    for (Index i = 0; i < count_; ++i) dst[i] = T(0);
#endif
  }

 private:
#if defined(__AVX512F__)
  static constexpr Index kLanes = 64 / Index(sizeof(T));
  Index whole_;    // elements copied as whole vectors
  unsigned tail_;  // mask of the remaining elements
#else
  Index count_;
#endif
};

// The loops below carry `omp simd` so that they vectorise whatever the
// optimisation level.

template <typename T>
inline void add_run(T* __restrict dst, const T* __restrict src, Index count) {
#pragma omp simd
  for (Index i = 0; i < count; ++i) dst[i] += src[i];
}

// Output pixel `row` (global index over N*OH*OW) as (n, oh, ow).
struct Pixel {
  Index n, oh, ow;
};

inline Pixel pixel_of(const Plan& p, Index row) {
  const Index n = row / p.pixels;
  const Index rest = row - n * p.pixels;
  return {n, rest / p.s.OW, rest % p.s.OW};
}

inline void next_pixel(const Plan& p, Pixel& px) {
  if (++px.ow == p.s.OW) {
    px.ow = 0;
    if (++px.oh == p.s.OH) {
      px.oh = 0;
      ++px.n;
    }
  }
}

// col (count, KH*KW*C) = rows [row0, row0 + count) of im2col(x). col is
// written front to back and needs RunCopy<T>::kSpill elements of slack.
template <typename T>
void im2col(const Plan& p, const T* x, Index row0, Index count, T* col) {
  const Conv2dShape& s = p.s;
  // Locals, so that the loop keeps them in registers.
  const Index H = s.H, W = s.W, C = s.C, KH = s.KH, KW = s.KW, kcol = p.kcol;
  const Index dilation_w = s.dilation_w;
  const Index row_elems = W * C, image_elems = H * row_elems;
  const Index run = KW * C;                           // one kernel row's values
  const Index kh_step = s.dilation_h * row_elems;     // offset between kernel rows in x
  const Index kw_step = dilation_w * C;                // offset between kernel columns in x
  const RunCopy<T> row_run(run), pixel_run(C);
  Pixel px = pixel_of(p, row0);
  for (Index r = 0; r < count; ++r, next_pixel(p, px), col += kcol) {
    const Index ih0 = px.oh * s.stride_h - s.pad_top;
    const Index iw0 = px.ow * s.stride_w - s.pad_left;
    // With unit horizontal dilation and no horizontal clipping, each kernel
    // row reads one contiguous run of KW*C values.
    const bool whole_rows = dilation_w == 1 && iw0 >= 0 && iw0 + KW <= W;
    // Offset of tap (kh, 0) in x; formed as a pointer only where it is inside x.
    Index offset = px.n * image_elems + ih0 * row_elems + iw0 * C;
    T* dst = col;
    for (Index ih = ih0; ih < ih0 + KH * s.dilation_h;
         ih += s.dilation_h, offset += kh_step, dst += run) {
      if (ih < 0 || ih >= H) {
        row_run.zero_spilling(dst);
      } else if (whole_rows) {
        row_run.copy_spilling(dst, x + offset);
      } else {
        for (Index kw = 0; kw < KW; ++kw) {
          const Index iw = iw0 + kw * dilation_w;
          if (iw < 0 || iw >= W) {
            pixel_run.zero_spilling(dst + kw * C);
          } else {
            pixel_run.copy_spilling(dst + kw * C, x + offset + kw * kw_step);
          }
        }
      }
    }
  }
}

// dx[n] += col2im of col (count, KH*KW*C) for rows [row0, row0 + count), all in
// image n. Taps that fall in the padding are dropped.
template <typename T>
void col2im_add(const Plan& p, const T* col, Index row0, Index count, T* dx) {
  const Conv2dShape& s = p.s;
  Pixel px = pixel_of(p, row0);
  for (Index r = 0; r < count; ++r, next_pixel(p, px), col += p.kcol) {
    const Index ih0 = px.oh * s.stride_h - s.pad_top;
    const Index iw0 = px.ow * s.stride_w - s.pad_left;
    const T* src = col;
    for (Index kh = 0; kh < s.KH; ++kh) {
      const Index ih = ih0 + kh * s.dilation_h;
      if (ih < 0 || ih >= s.H) {
        src += s.KW * s.C;
        continue;
      }
      T* dst_row = dx + ((px.n * s.H + ih) * s.W) * s.C;
      for (Index kw = 0; kw < s.KW; ++kw, src += s.C) {
        const Index iw = iw0 + kw * s.dilation_w;
        if (iw >= 0 && iw < s.W) add_run(dst_row + iw * s.C, src, s.C);
      }
    }
  }
}

template <typename T, Epilogue E>
inline T activate(T v) {
  if constexpr (E == Epilogue::kRelu) {
    return v < T(0) ? T(0) : v;  // NaN passes through, as in max(v, 0)
  } else {
    return v;
  }
}

// out (count, F) = act(out + bias), row by row (bias may be nullptr).
template <typename T, Epilogue E>
void epilogue(T* out, Index count, Index F, const T* bias) {
  for (Index r = 0; r < count; ++r, out += F) {
    if (bias != nullptr) {
#pragma omp simd
      for (Index f = 0; f < F; ++f) out[f] = activate<T, E>(out[f] + bias[f]);
    } else {
#pragma omp simd
      for (Index f = 0; f < F; ++f) out[f] = activate<T, E>(out[f]);
    }
  }
}

// dz (count, F) = dy gated by the activation's derivative at the output y.
template <typename T, Epilogue E>
void gate(const T* dy, const T* y, Index count, Index F, T* dz) {
  static_assert(E == Epilogue::kRelu, "only relu gates its gradient");
  const Index total = count * F;
#pragma omp simd
  for (Index i = 0; i < total; ++i) dz[i] = y[i] > T(0) ? dy[i] : T(0);
}

// db += column sums of dz (count, F).
template <typename T>
void add_column_sums(const T* dz, Index count, Index F, T* db) {
  for (Index r = 0; r < count; ++r, dz += F) add_run(db, dz, F);
}

// 64-byte aligned offsets of consecutive arrays inside one thread's slice.
struct Slice {
  Index offset = 0;
  template <typename T>
  Index take(Index elements) {
    const Index at = offset;
    offset += round_up(elements, 64 / Index(sizeof(T)));
    return at;
  }
};

// The backward passes' work units: groups of whole images, so that the
// col2im scatter into one image always belongs to one thread. Small images are
// grouped (up to a tile's rows, and into enough groups to keep every thread
// busy); a large image is one group that is cut into several tiles.
struct ImageGroups {
  ImageGroups(const Plan& p, Index tile_rows, int threads) : pixels(p.pixels), tile_rows(tile_rows) {
    const Index by_tile = std::max<Index>(1, tile_rows / std::max<Index>(p.pixels, 1));
    const Index by_balance = std::max<Index>(1, ceil_div(p.s.N, Index(4) * threads));
    images = std::min(by_tile, by_balance);
    count = ceil_div(p.s.N, images);
    N = p.s.N;
  }
  Index first_image(Index group) const { return group * images; }
  Index end_image(Index group) const { return std::min(N, (group + 1) * images); }

  // Calls tile(row0, count) for the group's output rows in equal tiles.
  template <typename Tile>
  void for_each_tile(Index group, Tile tile) const {
    const Index row0 = first_image(group) * pixels;
    const Index rows = (end_image(group) - first_image(group)) * pixels;
    if (rows == 0) return;
    const Index per_tile = ceil_div(rows, ceil_div(rows, tile_rows));
    for (Index r = 0; r < rows; r += per_tile) tile(row0 + r, std::min(per_tile, rows - r));
  }

  Index pixels, tile_rows, images, count, N;
};

// Threads for the backward passes: whole image groups each, or one thread
// (with a multi-threaded GEMM) when there are too few images or too little work.
int backward_threads(const Plan& p) {
  const int threads = max_threads();
  const bool enough = p.s.N >= threads && p.rows * p.kcol * p.s.F >= threads * kMinWorkPerThread;
  return enough ? threads : 1;
}

// ----- forward as an implicit GEMM -----------------------------------------------
//
// Where a pixel's im2col row splits into long enough runs that are contiguous
// in x (a kernel row's KW*C values, or one tap's C), the forward skips the
// im2col copy: the micro-kernel reads x in place through a table of run
// pointers (one per pixel and run; runs in the padding point at zeros),
// multiplies by the packed kernel over all KH*KW*C at once, and stores the
// tile with bias and activation applied, so y is written once.

// Values per contiguous run from which the gathered forward is used: each run
// gives the micro-kernel that many multiply-adds per pointer it loads. Runs of
// 3 (the lecture's 3x3 'valid' conv on 1 channel) already beat im2col + GEMM
// by 1.7x on Zen 3; shorter runs were not measured.
constexpr Index kMinGatherWidth = 3;
// Micro-tile rows per block: each packed kernel sliver is used this many
// times while it is in cache, and the block's input pixels stay in L2.
constexpr Index kGatherBlockSlivers = 16;

template <typename T>
using Blk = gemm_detail::Blocking<T>;

// packed (ceil(F / NR), kcol, NR) = w (kcol, F) in slivers of NR columns,
// zero-padded past F; packed_bias (ceil(F / NR) * NR) = bias, zero-padded.
template <typename T>
void pack_kernel(const Plan& p, const T* w, const T* bias, T* packed, T* packed_bias) {
  constexpr Index NR = Blk<T>::NR;
  const Index F = p.s.F, slivers = ceil_div(F, NR);
  for (Index js = 0; js < slivers; ++js) {
    const Index cols = std::min(NR, F - js * NR);
    T* out = packed + js * p.kcol * NR;
    for (Index k = 0; k < p.kcol; ++k) {
      std::copy(w + k * F + js * NR, w + k * F + js * NR + cols, out + k * NR);
      std::fill(out + k * NR + cols, out + (k + 1) * NR, T(0));
    }
  }
  std::fill(packed_bias, packed_bias + slivers * NR, T(0));
  if (bias != nullptr) std::copy(bias, bias + F, packed_bias);
}

// How the gathered forward cuts a pixel's im2col row into runs that are
// contiguous in x: one per kernel row (KW*C values) where no window is clipped
// horizontally and the kernel is not dilated along W, else one per tap (C).
struct Segments {
  explicit Segments(const Plan& p) {
    const Conv2dShape& s = p.s;
    per_row = s.dilation_w == 1 && s.pad_left == 0 && (s.OW - 1) * s.stride_w + s.KW <= s.W;
    count = per_row ? s.KH : s.KH * s.KW;
    width = per_row ? s.KW * s.C : s.C;
    const Index KW = per_row ? 1 : s.KW;
    for (Index kh = 0; kh < s.KH; ++kh) {
      for (Index kw = 0; kw < KW; ++kw) {
        offsets.push_back((kh * s.dilation_h * s.W + kw * s.dilation_w) * s.C);
      }
    }
  }
  bool per_row;
  Index count;                 // runs per pixel
  Index width;                 // values per run
  std::vector<Index> offsets;  // run t starts offsets[t] after the window's first pixel
};

// table (slivers, segments, MR) = row pointers of output pixels [row0, row0 +
// slivers * MR): entry (s, t, i) is where run t of pixel row0 + s * MR + i
// starts in x, or `zeros` where the run falls in the padding or the pixel is
// past `end`. run_offsets[t]: where run t starts relative to the window's
// first input pixel.
template <typename T>
void gather_table(const Plan& p, const Segments& seg, const Index* run_offsets, const T* x,
                  const T* zeros, Index row0, Index slivers, Index end, const T** table) {
  constexpr Index MR = Blk<T>::MR;
  const Conv2dShape& s = p.s;
  const Index KW = seg.per_row ? 1 : s.KW;  // runs per kernel row
  const Index last_h = (s.KH - 1) * s.dilation_h, last_w = (s.KW - 1) * s.dilation_w;
  Pixel px = pixel_of(p, std::min(row0, end - 1));
  for (Index r = 0; r < slivers * MR; ++r) {
    const T** out = table + (r / MR) * seg.count * MR + r % MR;
    if (row0 + r >= end) {
      for (Index t = 0; t < seg.count; ++t) out[t * MR] = zeros;
      continue;
    }
    const Index ih0 = px.oh * s.stride_h - s.pad_top;
    const Index iw0 = px.ow * s.stride_w - s.pad_left;
    const T* image = x + px.n * s.H * s.W * s.C;
    if (ih0 >= 0 && ih0 + last_h < s.H && iw0 >= 0 && iw0 + last_w < s.W) {
      // The whole window is inside the image (the common case).
      const T* first = image + (ih0 * s.W + iw0) * s.C;
      for (Index t = 0; t < seg.count; ++t) out[t * MR] = first + run_offsets[t];
    } else {
      for (Index kh = 0, t = 0; kh < s.KH; ++kh) {
        const Index ih = ih0 + kh * s.dilation_h;
        for (Index kw = 0; kw < KW; ++kw, ++t) {
          const Index iw = iw0 + kw * s.dilation_w;
          const bool inside = ih >= 0 && ih < s.H && iw >= 0 && iw < s.W;
          out[t * MR] = inside ? image + (ih * s.W + iw) * s.C : zeros;
        }
      }
    }
    next_pixel(p, px);
  }
}

// y[0:rows, 0:cols] (row stride F) = act(acc + bias), bias[0:NR] (padded).
template <typename T, Epilogue E>
inline void store_tile(const typename gemm_detail::Vec<T>::Reg (&acc)[Blk<T>::MR][Blk<T>::NV],
                       const T* bias, T* y, Index F, Index rows, Index cols) {
  using V = gemm_detail::Vec<T>;
  constexpr int MR = Blk<T>::MR, NV = Blk<T>::NV, L = V::kLanes, NR = Blk<T>::NR;
  const bool whole = rows == MR && cols == NR;
  alignas(64) T partial[MR * NR];
  T* out = whole ? y : partial;
  const Index ld = whole ? F : NR;
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) {
      auto r = V::add(acc[i][v], V::load(bias + v * L));
      if constexpr (E == Epilogue::kRelu) r = V::max(V::zero(), r);
      V::store(out + i * ld + v * L, r);
    }
  }
  if (whole) return;
  for (Index i = 0; i < rows; ++i) std::copy(partial + i * NR, partial + i * NR + cols, y + i * F);
}

template <typename T, Epilogue E>
void conv2d_forward_gathered(const Plan& p, const T* x, const T* w, const T* bias, T* y) {
  constexpr Index MR = Blk<T>::MR, NR = Blk<T>::NR;
  const Conv2dShape& s = p.s;
  const Segments seg(p);
  const Index f_slivers = ceil_div(s.F, NR);
  const Index m_slivers = ceil_div(p.rows, MR);
  const Index blocks = ceil_div(m_slivers, kGatherBlockSlivers);
  int threads = max_threads();
  if (blocks < threads || p.rows * p.kcol * s.F < threads * kMinWorkPerThread) threads = 1;

  // Shared and read-only: the packed kernel and bias, and the zeros of padding.
  Slice layout;
  const Index packed_at = layout.take<T>(f_slivers * p.kcol * NR);
  const Index bias_at = layout.take<T>(f_slivers * NR);
  const Index zeros_at = layout.take<T>(seg.width);
  T* shared = workspace<T>(layout.offset);
  pack_kernel(p, w, bias, shared + packed_at, shared + bias_at);
  std::fill(shared + zeros_at, shared + zeros_at + seg.width, T(0));
  const Index table_size = kGatherBlockSlivers * seg.count * MR;
  const T** tables = workspace<const T*>(table_size * threads);

  for_each_range(blocks, threads, [&](int t, Index first, Index last) {
    const T** table = tables + t * table_size;
    for (Index block = first; block < last; ++block) {
      const Index s0 = block * kGatherBlockSlivers;
      const Index slivers = std::min(kGatherBlockSlivers, m_slivers - s0);
      gather_table(p, seg, seg.offsets.data(), x, shared + zeros_at, s0 * MR, slivers, p.rows,
                   table);
      for (Index js = 0; js < f_slivers; ++js) {
        const T* b = shared + packed_at + js * p.kcol * NR;
        const Index cols = std::min(NR, s.F - js * NR);
        for (Index is = 0; is < slivers; ++is) {
          typename gemm_detail::Vec<T>::Reg acc[Blk<T>::MR][Blk<T>::NV];
          gemm_detail::micro_kernel_gathered<T>(seg.count, seg.width,
                                                table + is * seg.count * MR, b, acc);
          const Index row = (s0 + is) * MR;
          store_tile<T, E>(acc, shared + bias_at + js * NR, y + row * s.F + js * NR, s.F,
                           std::min(MR, p.rows - row), cols);
        }
      }
    }
  });
}

}  // namespace

template <typename T, Epilogue E>
void conv2d_forward(const Conv2dShape& s, const T* x, const T* w, const T* bias, T* y) {
  FUSEDNN_DISPATCH(conv2d_forward<T, E>(s, x, w, bias, y));
  const Plan p(s);
  if (p.rows == 0) return;
  if (!p.direct && Segments(p).width >= kMinGatherWidth) {
    conv2d_forward_gathered<T, E>(p, x, w, bias, y);
    return;
  }
  const Index tile_rows = p.tile_rows_for(p.kcol + s.F, Index(sizeof(T)), p.rows);
  const Index tiles = ceil_div(p.rows, tile_rows);
  int threads = max_threads();
  if (tiles < threads || p.rows * p.kcol * s.F < threads * kMinWorkPerThread) threads = 1;

  Slice layout;
  const Index col_at = p.direct ? 0 : layout.take<T>(tile_rows * p.kcol + RunCopy<T>::kSpill);
  const Index per_thread = layout.offset;
  T* ws = per_thread > 0 ? workspace<T>(per_thread * threads) : nullptr;

  for_each_range(tiles, threads, [&](int t, Index first, Index last) {
    T* col = ws + t * per_thread + col_at;
    for (Index tile = first; tile < last; ++tile) {
      const Index row0 = tile * tile_rows;
      const Index count = std::min(tile_rows, p.rows - row0);
      const T* a = x + row0 * s.C;  // the direct case: x's rows are the im2col rows
      if (!p.direct) {
        im2col(p, x, row0, count, col);
        a = col;
      }
      T* out = y + row0 * s.F;
      gemm<T>(false, false, count, s.F, p.kcol, T(1), a, p.kcol, w, s.F, T(0), out, s.F);
      if (bias != nullptr || E != Epilogue::kLinear) epilogue<T, E>(out, count, s.F, bias);
    }
  });
}


// Stride 1: the transposed convolution of g (conv2d_backward_data; dx of a
// convolution from dz) is the forward convolution of g with the kernel flipped
// in space and its channels swapped, w'(KH-1-kh, KW-1-kw, f, c) = w(kh, kw, c, f),
// padded by (K-1) * dilation - pad on the top and left: it then runs as the
// forward's implicit GEMM instead of dcol = g w^T scattered back by col2im.
// ResNet 3x3 28x28x128, batch 16, dx alone (2 threads, Xeon AVX-512, quiet):
// 13.8 ms by col2im, 12.0 ms this way (torch 11.0-11.9 ms).
template <typename T, Epilogue E>
void transposed_by_forward(const Plan& p, const T* g, const T* w, const T* bias, T* out) {
  const Conv2dShape& s = p.s;
  const Conv2dShape t{s.N,  s.OH, s.OW, s.F,          s.H,          s.W,
                      s.C,  s.KH, s.KW, 1,            1,            s.dilation_h,
                      s.dilation_w, (s.KH - 1) * s.dilation_h - s.pad_top,
                      (s.KW - 1) * s.dilation_w - s.pad_left};
  const Index taps = s.KH * s.KW;
  T* flipped = workspace<T, 1>(taps * s.C * s.F);  // conv2d_forward takes slot 0
  for (Index tap = 0; tap < taps; ++tap) {
    const T* from = w + tap * s.C * s.F;             // (C, F) of tap (kh, kw)
    T* to = flipped + (taps - 1 - tap) * s.F * s.C;  // (F, C) of tap (KH-1-kh, KW-1-kw)
    for (Index c = 0; c < s.C; ++c) {
      for (Index f = 0; f < s.F; ++f) to[f * s.C + c] = from[c * s.F + f];
    }
  }
  conv2d_forward<T, E>(t, g, flipped, bias, out);
}

// Where transposed_by_forward applies, and pays: it computes all H x W pixels
// of the result from g padded by (K-1) * dilation - pad, H*W / (OH*OW) times
// the multiply-adds of the col2im route, which skips the padding; and its
// GEMM's columns are the result's C channels, so few channels leave most of a
// register tile empty. dx alone, 3x3 kernels, quiet A/B (2 threads, Xeon
// AVX-512), this route's time over col2im's: 'same' 0.70-0.98 (16x28x28x128
// 0.83, 32x7x7x512 0.70, 64x32x32x16 0.98); 'valid' 64x26x26x32 (1.17x the
// pixels) 0.87, 8x64x64x64 (1.07x) 0.89, but 64x13x13x32 (1.40x) 1.11 and
// 64x5x5x64 (2.8x) 2.13; the lecture CNN's first layer (C = 1, 'valid'
// 28x28 -> 26x26) backward took 4.2 ms against 1.6 by col2im.
constexpr Index kMinChannelsToTransposeByForward = 16;

bool transposes_by_forward(const Plan& p) {
  const Conv2dShape& s = p.s;
  return !p.direct && s.stride_h == 1 && s.stride_w == 1 &&
         s.C >= kMinChannelsToTransposeByForward && 4 * s.H * s.W <= 5 * p.pixels;
}

// dx = the transposed convolution of dz = dy gated by act'(y) (E). A gated dz
// is formed whole, in memory held for this call only (it is the size of dy).
template <typename T, Epilogue E>
void data_gradient_by_forward(const Plan& p, const T* y, const T* dy, const T* w, T* dx) {
  AlignedBuffer<T> held;
  const T* dz = dy;
  if constexpr (E != Epilogue::kLinear) {
    const Index F = p.s.F;
    held = aligned_buffer<T>(p.rows * F);
    T* gated = held.get();
    const Index chunks = ceil_div(p.rows, kMinTileRows);
#pragma omp parallel for schedule(static) if (max_threads() > 1 && p.rows * F >= (Index(1) << 16))
    for (Index chunk = 0; chunk < chunks; ++chunk) {
      const Index row0 = chunk * kMinTileRows;
      gate<T, E>(dy + row0 * F, y + row0 * F, std::min(kMinTileRows, p.rows - row0), F,
                 gated + row0 * F);
    }
    dz = gated;
  }
  transposed_by_forward<T, Epilogue::kLinear>(p, dz, w, nullptr, dx);
}

template <typename T, Epilogue E>
void conv2d_backward(const Conv2dShape& s, const T* x, const T* y, const T* dy, const T* w, T* dx,
                     T* dw, T* db) {
  FUSEDNN_DISPATCH(conv2d_backward<T, E>(s, x, y, dy, w, dx, dw, db));
  const Plan p(s);
  const Index image_elems = s.H * s.W * s.C;
  if (dw != nullptr) std::fill(dw, dw + p.kcol * s.F, T(0));
  if (db != nullptr) std::fill(db, db + s.F, T(0));
  if (p.rows == 0) {
    if (dx != nullptr) std::fill(dx, dx + s.N * image_elems, T(0));
    return;
  }
  if (dx == nullptr && dw == nullptr && db == nullptr) return;

  // dx after the weight gradients, through the forward (see data_gradient_by_forward).
  T* const dx_by_forward = transposes_by_forward(p) ? dx : nullptr;
  if (dx_by_forward != nullptr) {
    dx = nullptr;
    if (dw == nullptr && db == nullptr) {
      data_gradient_by_forward<T, E>(p, y, dy, w, dx_by_forward);
      return;
    }
  }
  const Index tile_rows = p.tile_rows_for(p.kcol + 2 * s.F, Index(sizeof(T)), p.rows);
  const int threads = backward_threads(p);
  const ImageGroups groups(p, tile_rows, threads);
  constexpr bool gated = E != Epilogue::kLinear;
  const bool need_col = !p.direct && (dw != nullptr || dx != nullptr);
  // One thread accumulates straight into dw/db; with several, each sums its
  // own copy and the copies are added in thread order afterwards.
  const bool partials = threads > 1;

  Slice layout;
  const Index col_at = need_col ? layout.take<T>(tile_rows * p.kcol + RunCopy<T>::kSpill) : 0;
  const Index dz_at = gated ? layout.take<T>(tile_rows * s.F) : 0;
  const Index dw_at = partials && dw != nullptr ? layout.take<T>(p.kcol * s.F) : 0;
  const Index db_at = partials && db != nullptr ? layout.take<T>(s.F) : 0;
  const Index per_thread = layout.offset;
  T* ws = per_thread > 0 ? workspace<T>(per_thread * threads) : nullptr;

  for_each_range(groups.count, threads, [&](int t, Index first, Index last) {
    T* slice = ws + t * per_thread;
    T* col = slice + col_at;
    // Only the gradients asked for: x is null when dw is not (an input gradient alone,
    // through a frozen convolution).
    T* dw_acc = dw == nullptr ? nullptr : partials ? slice + dw_at : dw;
    T* db_acc = db == nullptr ? nullptr : partials ? slice + db_at : db;
    if (partials && dw != nullptr) std::fill(dw_acc, dw_acc + p.kcol * s.F, T(0));
    if (partials && db != nullptr) std::fill(db_acc, db_acc + s.F, T(0));
    for (Index group = first; group < last; ++group) {
      if (dx != nullptr && !p.direct) {
        std::fill(dx + groups.first_image(group) * image_elems,
                  dx + groups.end_image(group) * image_elems, T(0));
      }
      groups.for_each_tile(group, [&](Index row0, Index count) {
        const T* dz = dy + row0 * s.F;
        if constexpr (gated) {
          gate<T, E>(dz, y + row0 * s.F, count, s.F, slice + dz_at);
          dz = slice + dz_at;
        }
        if (db_acc != nullptr) add_column_sums(dz, count, s.F, db_acc);
        if (dw_acc != nullptr) {
          const T* a = x + row0 * s.C;
          if (!p.direct) {
            im2col(p, x, row0, count, col);
            a = col;
          }
          gemm<T>(true, false, p.kcol, s.F, count, T(1), a, p.kcol, dz, s.F, T(1), dw_acc, s.F);
        }
        if (dx != nullptr) {
          if (p.direct) {
            gemm<T>(false, true, count, s.C, s.F, T(1), dz, s.F, w, s.F, T(0), dx + row0 * s.C,
                    s.C);
          } else {
            gemm<T>(false, true, count, p.kcol, s.F, T(1), dz, s.F, w, s.F, T(0), col, p.kcol);
            col2im_add(p, col, row0, count, dx);
          }
        }
      });
    }
  });

  if (partials) {
    for (int t = 0; t < threads; ++t) {
      const T* slice = ws + t * per_thread;
      if (dw != nullptr) add_run(dw, slice + dw_at, p.kcol * s.F);
      if (db != nullptr) add_run(db, slice + db_at, s.F);
    }
  }
  if (dx_by_forward != nullptr) data_gradient_by_forward<T, E>(p, y, dy, w, dx_by_forward);
}

template <typename T, Epilogue E>
void conv2d_backward_data(const Conv2dShape& s, const T* g, const T* w, const T* bias, T* out) {
  FUSEDNN_DISPATCH(conv2d_backward_data<T, E>(s, g, w, bias, out));
  const Plan p(s);
  if (transposes_by_forward(p)) return transposed_by_forward<T, E>(p, g, w, bias, out);
  const Index image_elems = s.H * s.W * s.C;
  const Index tile_rows =
      p.tile_rows_for(p.kcol + s.F, Index(sizeof(T)), std::max<Index>(p.rows, 1));
  const int threads = backward_threads(p);
  const ImageGroups groups(p, tile_rows, threads);

  Slice layout;
  const Index col_at = p.direct ? 0 : layout.take<T>(tile_rows * p.kcol);
  const Index per_thread = layout.offset;
  T* ws = per_thread > 0 ? workspace<T>(per_thread * threads) : nullptr;

  for_each_range(groups.count, threads, [&](int t, Index first, Index last) {
    T* col = ws + t * per_thread + col_at;
    for (Index group = first; group < last; ++group) {
      T* images = out + groups.first_image(group) * image_elems;
      const Index pixels = (groups.end_image(group) - groups.first_image(group)) * s.H * s.W;
      if (p.direct) {
        // One output pixel per input pixel: each tile gets its epilogue at once.
        groups.for_each_tile(group, [&](Index row0, Index count) {
          T* dst = out + row0 * s.C;
          gemm<T>(false, true, count, s.C, s.F, T(1), g + row0 * s.F, s.F, w, s.F, T(0), dst,
                  s.C);
          if (bias != nullptr || E != Epilogue::kLinear) epilogue<T, E>(dst, count, s.C, bias);
        });
        continue;
      }
      // The scatter accumulates onto the bias; the activation waits for the last tile.
      if (bias != nullptr) {
        const RunCopy<T> channels(s.C);
        for (Index i = 0; i < pixels; ++i) channels.copy(images + i * s.C, bias);
      } else {
        std::fill(images, images + pixels * s.C, T(0));
      }
      groups.for_each_tile(group, [&](Index row0, Index count) {
        gemm<T>(false, true, count, p.kcol, s.F, T(1), g + row0 * s.F, s.F, w, s.F, T(0), col,
                p.kcol);
        col2im_add(p, col, row0, count, out);
      });
      if constexpr (E != Epilogue::kLinear) epilogue<T, E>(images, pixels, s.C, nullptr);
    }
  });
}

#define FUSEDNN_INSTANTIATE_CONV(T, E)                                                          \
  template void conv2d_forward<T, E>(const Conv2dShape&, const T*, const T*, const T*, T*);     \
  template void conv2d_backward<T, E>(const Conv2dShape&, const T*, const T*, const T*,         \
                                      const T*, T*, T*, T*);                                    \
  template void conv2d_backward_data<T, E>(const Conv2dShape&, const T*, const T*, const T*, T*);

FUSEDNN_INSTANTIATE_CONV(float, Epilogue::kLinear)
FUSEDNN_INSTANTIATE_CONV(float, Epilogue::kRelu)
FUSEDNN_INSTANTIATE_CONV(double, Epilogue::kLinear)
FUSEDNN_INSTANTIATE_CONV(double, Epilogue::kRelu)
#undef FUSEDNN_INSTANTIATE_CONV

FUSEDNN_CPU_END
