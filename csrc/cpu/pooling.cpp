// Pooling and nearest-neighbour upsampling on the CPU (NHWC).
//
// Forward: OpenMP over the N * OH output rows; an output pixel is a vector of
// C channels (innermost, contiguous) updated by one vectorised pass per input
// pixel of its window. Backward: OpenMP over the N * H input rows; each input
// pixel gathers from the windows that cover it, the first writing and the
// others adding, so threads write disjoint rows of dx and need no zero fill.
// The exception is max pooling with overlapping windows, which scatters (see
// max_pool2d_backward_scatter).
#include <algorithm>
#include <cstdint>
#include <vector>

#include "fusednn/pooling.h"

FUSEDNN_CPU_BEGIN

namespace {

// Rows are split across threads only when there is enough work to pay for it.
constexpr std::int64_t kParallelElements = 1 << 15;

// A half-open range [begin, end).
struct Span {
  std::int64_t begin, end;
};

// Input positions [begin, end) of window `o` along one axis, clipped to the input
// of size `I` (the clipped-off part is padding).
inline Span window_inputs(std::int64_t o, std::int64_t pad, std::int64_t K, std::int64_t S,
                          std::int64_t I) {
  const std::int64_t start = o * S - pad;
  return {std::max<std::int64_t>(start, 0), std::min(start + K, I)};
}

// Windows [begin, end) along one axis that cover input position `i`: those with
// o * S - pad <= i < o * S - pad + K, among the O windows.
inline Span covering_windows(std::int64_t i, std::int64_t pad, std::int64_t K, std::int64_t S,
                             std::int64_t O) {
  const std::int64_t padded = i + pad;
  const std::int64_t lowest_start = padded - K + 1;
  const std::int64_t begin = lowest_start <= 0 ? 0 : (lowest_start + S - 1) / S;
  return {begin, std::min(padded / S + 1, O)};
}

// Channels per block of the max-pooling forward: a block's running maximum and
// its positions stay in registers over the whole window (four AVX2 or two
// AVX-512 vectors of float), and only the finished block is stored. Updating y
// and argmax in memory per input pixel instead compiled to masked stores, which
// are slow on AMD cores (max forward measured 1.5-3.4x slower than average).
template <typename T>
constexpr std::int64_t kBlock = 128 / sizeof(T);

// One pooling window of one sample x_n (H, W, C): input rows x input columns.
template <typename T>
struct Window {
  const T* x_n;
  Span rows, cols;
  std::int64_t W, C;
};

// best[c], best_at[c] = maximum and its position h * W + w over the window,
// channels [c0, c0 + count); Block > 0 fixes count to Block at compile time.
// The window's first input pixel starts the running maximum (no -inf sentinel,
// so an all -inf window still points at a real element).
template <typename T, typename Index, std::int64_t Block>
inline void window_max(const Window<T>& win, std::int64_t c0, std::int64_t count,
                       T* __restrict best_out, Index* __restrict best_at_out) {
  constexpr std::int64_t kCapacity = Block > 0 ? Block : kBlock<T>;
  const std::int64_t channels = Block > 0 ? Block : count;
  T best[kCapacity];
  Index best_at[kCapacity];
  const std::int64_t first = win.rows.begin * win.W + win.cols.begin;
  const T* x = win.x_n + c0;
#pragma omp simd
  for (std::int64_t c = 0; c < channels; ++c) {
    best[c] = x[first * win.C + c];
    best_at[c] = static_cast<Index>(first);
  }
  for (std::int64_t h = win.rows.begin; h < win.rows.end; ++h) {
    for (std::int64_t w = (h == win.rows.begin ? win.cols.begin + 1 : win.cols.begin);
         w < win.cols.end; ++w) {
      const std::int64_t pos = h * win.W + w;
      const T* pixel = x + pos * win.C;
#pragma omp simd
      for (std::int64_t c = 0; c < channels; ++c) {
        const T v = pixel[c], b = best[c];
        // Strictly greater keeps the first of equal maxima; a NaN replaces a
        // number (v <= b is false for a NaN v) and is never replaced (b == b).
        const bool take = !(v <= b) && b == b;
        best[c] = take ? v : b;
        best_at[c] = take ? static_cast<Index>(pos) : best_at[c];
      }
    }
  }
#pragma omp simd
  for (std::int64_t c = 0; c < channels; ++c) {
    best_out[c] = best[c];
    best_at_out[c] = best_at[c];
  }
}

// Overlapping windows (a stride smaller than the window): gathering would read
// every covering window's argmax for each input pixel (KH/SH * KW/SW of them),
// so each output scatters instead, into a zeroed dx. Threads own whole samples.
// Within one output pixel the C channels hit C distinct elements, so the
// scatter vectorises; an argmax outside [0, H * W) is skipped, never written.
template <typename T, typename Index>
void max_pool2d_backward_scatter(const T* dy, const Index* argmax, T* dx,
                                 const Pool2dGeometry& g) {
  const std::int64_t C = g.C, positions = g.H * g.W, outputs = g.OH * g.OW;
  const std::int64_t work = g.N * (positions + outputs) * C;
#pragma omp parallel for schedule(static) if (work >= kParallelElements)
  for (std::int64_t n = 0; n < g.N; ++n) {
    T* dx_n = dx + n * positions * C;
    std::fill(dx_n, dx_n + positions * C, T(0));
    for (std::int64_t o = n * outputs; o < (n + 1) * outputs; ++o) {
      const Index* at = argmax + o * C;
      const T* grad = dy + o * C;
#pragma omp simd
      for (std::int64_t c = 0; c < C; ++c) {
        const std::int64_t pos = at[c];
        if (pos >= 0 && pos < positions) dx_n[pos * C + c] += grad[c];
      }
    }
  }
}

}  // namespace

template <typename T, typename Index>
void max_pool2d_forward(const T* x, T* y, Index* argmax, const Pool2dGeometry& g) {
  FUSEDNN_DISPATCH(max_pool2d_forward<T, Index>(x, y, argmax, g));
  const std::int64_t C = g.C;
  const std::int64_t work = g.N * g.OH * g.OW * C * g.KH * g.KW;
  // Channels in whole blocks of kBlock, then one partial block.
  const std::int64_t whole = C / kBlock<T> * kBlock<T>;
#pragma omp parallel for schedule(static) if (work >= kParallelElements)
  for (std::int64_t row = 0; row < g.N * g.OH; ++row) {
    const std::int64_t n = row / g.OH, oh = row % g.OH;
    const Span rows = window_inputs(oh, g.pad_top, g.KH, g.SH, g.H);
    const T* x_n = x + n * g.H * g.W * C;
    for (std::int64_t ow = 0; ow < g.OW; ++ow) {
      const Window<T> window{x_n, rows, window_inputs(ow, g.pad_left, g.KW, g.SW, g.W), g.W, C};
      T* best = y + (row * g.OW + ow) * C;
      Index* best_at = argmax + (row * g.OW + ow) * C;
      for (std::int64_t c = 0; c < whole; c += kBlock<T>) {
        window_max<T, Index, kBlock<T>>(window, c, kBlock<T>, best + c, best_at + c);
      }
      if (whole < C) {
        window_max<T, Index, 0>(window, whole, C - whole, best + whole, best_at + whole);
      }
    }
  }
}

template <typename T, typename Index>
void max_pool2d_backward(const T* dy, const Index* argmax, T* dx, const Pool2dGeometry& g) {
  FUSEDNN_DISPATCH(max_pool2d_backward<T, Index>(dy, argmax, dx, g));
  if (g.SH < g.KH || g.SW < g.KW) {
    max_pool2d_backward_scatter(dy, argmax, dx, g);
    return;
  }
  // Windows do not overlap: each input pixel gathers from at most one window.
  const std::int64_t C = g.C;
  const std::int64_t work = g.N * g.H * g.W * C;
  // The windows covering each column, computed once (they involve divisions).
  std::vector<Span> column_windows(g.W);
  for (std::int64_t w = 0; w < g.W; ++w) {
    column_windows[w] = covering_windows(w, g.pad_left, g.KW, g.SW, g.OW);
  }
#pragma omp parallel for schedule(static) if (work >= kParallelElements)
  for (std::int64_t row = 0; row < g.N * g.H; ++row) {
    const std::int64_t n = row / g.H, h = row % g.H;
    const Span out_rows = covering_windows(h, g.pad_top, g.KH, g.SH, g.OH);
    for (std::int64_t w = 0; w < g.W; ++w) {
      const Span out_cols = column_windows[w];
      const Index pos = static_cast<Index>(h * g.W + w);
      T* d = dx + (row * g.W + w) * C;
      if (out_rows.begin < out_rows.end && out_cols.begin < out_cols.end) {
        const std::int64_t o = ((n * g.OH + out_rows.begin) * g.OW + out_cols.begin) * C;
#pragma omp simd
        for (std::int64_t c = 0; c < C; ++c) d[c] = argmax[o + c] == pos ? dy[o + c] : T(0);
      } else {
        std::fill(d, d + C, T(0));  // stride > window, or past the last window
      }
    }
  }
}

// mean_out[c] = the mean over the window, channels [c0, c0 + count); Block > 0
// fixes count to Block at compile time, so the sums stay in registers over the
// whole window. Summing into y in memory instead (a load and a store per input
// pixel and vector) measured 0.92x torch on the lecture CNN's 26x26x32 pool.
template <typename T, std::int64_t Block>
inline void window_mean(const Window<T>& win, std::int64_t c0, std::int64_t count,
                        T* __restrict mean_out) {
  constexpr std::int64_t kCapacity = Block > 0 ? Block : kBlock<T>;
  const std::int64_t channels = Block > 0 ? Block : count;
  T sum[kCapacity];
#pragma omp simd
  for (std::int64_t c = 0; c < channels; ++c) sum[c] = T(0);
  const T* x = win.x_n + c0;
  for (std::int64_t h = win.rows.begin; h < win.rows.end; ++h) {
    for (std::int64_t w = win.cols.begin; w < win.cols.end; ++w) {
      const T* pixel = x + (h * win.W + w) * win.C;
#pragma omp simd
      for (std::int64_t c = 0; c < channels; ++c) sum[c] += pixel[c];
    }
  }
  const T inverse_count = T(1) / static_cast<T>((win.rows.end - win.rows.begin) *
                                                (win.cols.end - win.cols.begin));
#pragma omp simd
  for (std::int64_t c = 0; c < channels; ++c) mean_out[c] = sum[c] * inverse_count;
}

template <typename T>
void avg_pool2d_forward(const T* x, T* y, const Pool2dGeometry& g) {
  FUSEDNN_DISPATCH(avg_pool2d_forward<T>(x, y, g));
  const std::int64_t C = g.C;
  const std::int64_t whole = C / kBlock<T> * kBlock<T>;
  const std::int64_t work = g.N * g.OH * g.OW * C * g.KH * g.KW;
#pragma omp parallel for schedule(static) if (work >= kParallelElements)
  for (std::int64_t row = 0; row < g.N * g.OH; ++row) {
    const std::int64_t n = row / g.OH, oh = row % g.OH;
    const Span rows = window_inputs(oh, g.pad_top, g.KH, g.SH, g.H);
    const T* x_n = x + n * g.H * g.W * C;
    for (std::int64_t ow = 0; ow < g.OW; ++ow) {
      const Window<T> window{x_n, rows, window_inputs(ow, g.pad_left, g.KW, g.SW, g.W), g.W, C};
      T* mean = y + (row * g.OW + ow) * C;
      for (std::int64_t c = 0; c < whole; c += kBlock<T>) {
        window_mean<T, kBlock<T>>(window, c, kBlock<T>, mean + c);
      }
      if (whole < C) window_mean<T, 0>(window, whole, C - whole, mean + whole);
    }
  }
}

template <typename T>
void avg_pool2d_backward(const T* dy, T* dx, const Pool2dGeometry& g) {
  FUSEDNN_DISPATCH(avg_pool2d_backward<T>(dy, dx, g));
  const std::int64_t C = g.C;
  const std::int64_t work = g.N * g.H * g.W * C;
  // Per column: the covering windows; per window column / row: 1 / (input elements
  // inside it), so that 1 / count of window (oh, ow) is a product (within 1.5 ulp).
  std::vector<Span> column_windows(g.W);
  for (std::int64_t w = 0; w < g.W; ++w) {
    column_windows[w] = covering_windows(w, g.pad_left, g.KW, g.SW, g.OW);
  }
  std::vector<T> inverse_columns(g.OW), inverse_rows(g.OH);
  for (std::int64_t ow = 0; ow < g.OW; ++ow) {
    const Span cols = window_inputs(ow, g.pad_left, g.KW, g.SW, g.W);
    inverse_columns[ow] = T(1) / static_cast<T>(cols.end - cols.begin);
  }
  for (std::int64_t oh = 0; oh < g.OH; ++oh) {
    const Span rows = window_inputs(oh, g.pad_top, g.KH, g.SH, g.H);
    inverse_rows[oh] = T(1) / static_cast<T>(rows.end - rows.begin);
  }
#pragma omp parallel for schedule(static) if (work >= kParallelElements)
  for (std::int64_t row = 0; row < g.N * g.H; ++row) {
    const std::int64_t n = row / g.H, h = row % g.H;
    const Span out_rows = covering_windows(h, g.pad_top, g.KH, g.SH, g.OH);
    for (std::int64_t w = 0; w < g.W; ++w) {
      const Span out_cols = column_windows[w];
      T* d = dx + (row * g.W + w) * C;
      bool written = false;
      for (std::int64_t oh = out_rows.begin; oh < out_rows.end; ++oh) {
        for (std::int64_t ow = out_cols.begin; ow < out_cols.end; ++ow) {
          const T inverse_count = inverse_rows[oh] * inverse_columns[ow];
          const T* grad = dy + ((n * g.OH + oh) * g.OW + ow) * C;
          if (written) {
#pragma omp simd
            for (std::int64_t c = 0; c < C; ++c) d[c] += grad[c] * inverse_count;
          } else {
#pragma omp simd
            for (std::int64_t c = 0; c < C; ++c) d[c] = grad[c] * inverse_count;
            written = true;
          }
        }
      }
      if (!written) std::fill(d, d + C, T(0));
    }
  }
}

template <typename T>
void upsample_nearest2d_forward(const T* x, T* y, std::int64_t N, std::int64_t H,
                                std::int64_t W, std::int64_t C, std::int64_t SH,
                                std::int64_t SW) {
  FUSEDNN_DISPATCH(upsample_nearest2d_forward<T>(x, y, N, H, W, C, SH, SW));
  const std::int64_t OH = H * SH, OW = W * SW;
#pragma omp parallel for schedule(static) if (N * OH * OW * C >= kParallelElements)
  for (std::int64_t row = 0; row < N * OH; ++row) {
    const std::int64_t n = row / OH, h = (row % OH) / SH;
    const T* x_row = x + (n * H + h) * W * C;
    T* y_row = y + row * OW * C;
    for (std::int64_t w = 0; w < W; ++w) {
      for (std::int64_t j = 0; j < SW; ++j) {
        std::copy(x_row + w * C, x_row + (w + 1) * C, y_row + (w * SW + j) * C);
      }
    }
  }
}

template <typename T>
void upsample_nearest2d_backward(const T* dy, T* dx, std::int64_t N, std::int64_t H,
                                 std::int64_t W, std::int64_t C, std::int64_t SH,
                                 std::int64_t SW) {
  FUSEDNN_DISPATCH(upsample_nearest2d_backward<T>(dy, dx, N, H, W, C, SH, SW));
  const std::int64_t OH = H * SH, OW = W * SW;
#pragma omp parallel for schedule(static) if (N * OH * OW * C >= kParallelElements)
  for (std::int64_t row = 0; row < N * H; ++row) {
    const std::int64_t n = row / H, h = row % H;
    for (std::int64_t w = 0; w < W; ++w) {
      T* d = dx + (row * W + w) * C;
#pragma omp simd
      for (std::int64_t c = 0; c < C; ++c) d[c] = T(0);
      for (std::int64_t i = 0; i < SH; ++i) {
        const T* dy_row = dy + ((n * OH + h * SH + i) * OW + w * SW) * C;
        for (std::int64_t j = 0; j < SW; ++j) {
#pragma omp simd
          for (std::int64_t c = 0; c < C; ++c) d[c] += dy_row[j * C + c];
        }
      }
    }
  }
}

#define FUSEDNN_INSTANTIATE_MAX_POOL(T, Index)                                              \
  template void max_pool2d_forward<T, Index>(const T*, T*, Index*, const Pool2dGeometry&); \
  template void max_pool2d_backward<T, Index>(const T*, const Index*, T*, const Pool2dGeometry&);
FUSEDNN_INSTANTIATE_MAX_POOL(float, std::int32_t)
FUSEDNN_INSTANTIATE_MAX_POOL(float, std::int64_t)
FUSEDNN_INSTANTIATE_MAX_POOL(double, std::int32_t)
FUSEDNN_INSTANTIATE_MAX_POOL(double, std::int64_t)
#undef FUSEDNN_INSTANTIATE_MAX_POOL

#define FUSEDNN_INSTANTIATE(T)                                                               \
  template void avg_pool2d_forward<T>(const T*, T*, const Pool2dGeometry&);                  \
  template void avg_pool2d_backward<T>(const T*, T*, const Pool2dGeometry&);                 \
  template void upsample_nearest2d_forward<T>(const T*, T*, std::int64_t, std::int64_t,      \
                                              std::int64_t, std::int64_t, std::int64_t,      \
                                              std::int64_t);                                 \
  template void upsample_nearest2d_backward<T>(const T*, T*, std::int64_t, std::int64_t,     \
                                               std::int64_t, std::int64_t, std::int64_t,     \
                                               std::int64_t);
FUSEDNN_INSTANTIATE(float)
FUSEDNN_INSTANTIATE(double)
#undef FUSEDNN_INSTANTIATE

FUSEDNN_CPU_END
