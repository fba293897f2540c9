// pooling.cu in the emulator against the CPU kernels: max pooling (float and
// double values, int32 and int64 argmax; ties and a NaN in the input), average
// pooling and nearest upsampling, forward and backward, on "same"-padded odd
// shapes, batch 1, strides that leave a last partial window, and more elements
// than one block (256) covers.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "check.h"
#include "fusednn/pooling.h"

namespace {

using driver::expect_close;
using driver::expect_equal;
using fusednn::Pool2dGeometry;

// Keras "same" padding: OH = ceil(H / SH), the padding split with the smaller
// half first.
Pool2dGeometry same(std::int64_t N, std::int64_t H, std::int64_t W, std::int64_t C,
                    std::int64_t KH, std::int64_t KW, std::int64_t SH, std::int64_t SW) {
  const std::int64_t OH = (H + SH - 1) / SH, OW = (W + SW - 1) / SW;
  const std::int64_t pad_h = std::max<std::int64_t>((OH - 1) * SH + KH - H, 0);
  const std::int64_t pad_w = std::max<std::int64_t>((OW - 1) * SW + KW - W, 0);
  return {N, H, W, C, OH, OW, KH, KW, SH, SW, pad_h / 2, pad_w / 2};
}

std::string describe(const Pool2dGeometry& g) {
  return "N=" + std::to_string(g.N) + " H=" + std::to_string(g.H) + " W=" + std::to_string(g.W) +
         " C=" + std::to_string(g.C) + " K=" + std::to_string(g.KH) + "x" + std::to_string(g.KW) +
         " S=" + std::to_string(g.SH) + "x" + std::to_string(g.SW);
}

// Values on a grid of 0.25 so that windows hold equal maxima (the first wins).
template <typename T>
std::vector<T> quantised(std::size_t n) {
  std::vector<T> v = driver::uniform<T>(n, -2, 2);
  for (T& x : v) x = std::round(x * 4) / 4;
  return v;
}

// Sums of at most KH * KW (<= 9) terms, in the same order as the CPU kernel's
// or not: within 9 ulps, relative to the terms' magnitude (<= 2): rtol 1e-5 and
// atol 1e-5 for float, 1e-13 for double.
template <typename T>
double tolerance() {
  return sizeof(T) == 4 ? 1e-5 : 1e-13;
}

template <typename T, typename Index>
void max_case(const Pool2dGeometry& g) {
  const std::string name = std::string("max ") + (sizeof(T) == 4 ? "f32" : "f64") + " idx" +
                           std::to_string(8 * sizeof(Index)) + " " + describe(g);
  const std::size_t in = g.N * g.H * g.W * g.C, out = g.N * g.OH * g.OW * g.C;
  std::vector<T> x = quantised<T>(in);
  x[in / 2] = NAN;
  auto y = driver::poisoned<T>(out);
  auto argmax = driver::poisoned<Index>(out);
  fusednn::cuda::max_pool2d_forward<T, Index>(x.data(), y.data(), argmax.data(), g, 0);
  std::vector<T> want_y(out);
  std::vector<Index> want_argmax(out);
  fusednn::cpu::max_pool2d_forward<T, Index>(x.data(), want_y.data(), want_argmax.data(), g);
  expect_equal(name + " y", y, want_y);
  expect_equal(name + " argmax", argmax, want_argmax);

  const std::vector<T> dy = driver::uniform<T>(out, -1, 1);
  auto dx = driver::poisoned<T>(in);
  fusednn::cuda::max_pool2d_backward<T, Index>(dy.data(), want_argmax.data(), dx.data(), g, 0);
  std::vector<T> want_dx(in);
  fusednn::cpu::max_pool2d_backward<T, Index>(dy.data(), want_argmax.data(), want_dx.data(), g);
  expect_close(name + " dx", dx, want_dx, tolerance<T>(), tolerance<T>());
}

template <typename T>
void avg_case(const Pool2dGeometry& g) {
  const std::string name = std::string("avg ") + (sizeof(T) == 4 ? "f32 " : "f64 ") + describe(g);
  const std::size_t in = g.N * g.H * g.W * g.C, out = g.N * g.OH * g.OW * g.C;
  const std::vector<T> x = driver::uniform<T>(in, -2, 2);
  auto y = driver::poisoned<T>(out);
  fusednn::cuda::avg_pool2d_forward<T>(x.data(), y.data(), g, 0);
  std::vector<T> want_y(out);
  fusednn::cpu::avg_pool2d_forward<T>(x.data(), want_y.data(), g);
  expect_close(name + " y", y, want_y, tolerance<T>(), tolerance<T>());

  const std::vector<T> dy = driver::uniform<T>(out, -1, 1);
  auto dx = driver::poisoned<T>(in);
  fusednn::cuda::avg_pool2d_backward<T>(dy.data(), dx.data(), g, 0);
  std::vector<T> want_dx(in);
  fusednn::cpu::avg_pool2d_backward<T>(dy.data(), want_dx.data(), g);
  expect_close(name + " dx", dx, want_dx, tolerance<T>(), tolerance<T>());
}

template <typename T>
void upsample_case(std::int64_t N, std::int64_t H, std::int64_t W, std::int64_t C,
                   std::int64_t SH, std::int64_t SW) {
  const std::string name = std::string("upsample ") + (sizeof(T) == 4 ? "f32" : "f64") +
                           " N=" + std::to_string(N) + " H=" + std::to_string(H) +
                           " W=" + std::to_string(W) + " C=" + std::to_string(C) +
                           " S=" + std::to_string(SH) + "x" + std::to_string(SW);
  const std::size_t in = N * H * W * C, out = in * SH * SW;
  const std::vector<T> x = driver::uniform<T>(in, -1, 1);
  auto y = driver::poisoned<T>(out);
  fusednn::cuda::upsample_nearest2d_forward<T>(x.data(), y.data(), N, H, W, C, SH, SW, 0);
  std::vector<T> want_y(out);
  fusednn::cpu::upsample_nearest2d_forward<T>(x.data(), want_y.data(), N, H, W, C, SH, SW);
  expect_equal(name + " y", y, want_y);

  const std::vector<T> dy = driver::uniform<T>(out, -1, 1);
  auto dx = driver::poisoned<T>(in);
  fusednn::cuda::upsample_nearest2d_backward<T>(dy.data(), dx.data(), N, H, W, C, SH, SW, 0);
  std::vector<T> want_dx(in);
  fusednn::cpu::upsample_nearest2d_backward<T>(dy.data(), want_dx.data(), N, H, W, C, SH, SW);
  expect_close(name + " dx", dx, want_dx, tolerance<T>(), tolerance<T>());
}

// Geometries with an empty window are refused before any kernel runs: the
// output stays poisoned.
void empty_window_case(const char* what, const Pool2dGeometry& g) {
  const std::size_t in = g.N * g.H * g.W * g.C, out = g.N * g.OH * g.OW * g.C;
  const std::vector<float> x(in, 1.f);
  auto y = driver::poisoned<float>(out);
  auto argmax = driver::poisoned<std::int32_t>(out);
  bool refused = false;
  try {
    fusednn::cuda::max_pool2d_forward<float, std::int32_t>(x.data(), y.data(), argmax.data(), g,
                                                           0);
  } catch (const std::invalid_argument&) {
    refused = true;
  }
  try {
    fusednn::cuda::avg_pool2d_forward<float>(x.data(), y.data(), g, 0);
    refused = false;
  } catch (const std::invalid_argument&) {
  }
  const bool untouched = std::all_of(y.begin(), y.end(), [](float v) { return std::isnan(v); });
  std::printf("%s empty window refused: %s\n", refused && untouched ? "ok  " : "FAIL", what);
  if (!(refused && untouched)) ++driver::failures();
}

}  // namespace

int main(int argc, char** argv) {
  const bool small = argc > 1 && std::string(argv[1]) == "--small";
  const Pool2dGeometry odd = same(1, 5, 7, 3, 3, 2, 2, 1);
  const Pool2dGeometry overlapping = same(2, 9, 6, 5, 3, 3, 2, 2);  // 540 inputs: 3 blocks
  max_case<float, std::int32_t>(odd);
  avg_case<float>(odd);
  upsample_case<float>(1, 3, 5, 3, 2, 3);
  // N, H, W, C, OH, OW, KH, KW, SH, SW, pad_top, pad_left
  empty_window_case("padding as large as the window", {1, 4, 4, 2, 2, 2, 2, 2, 2, 2, 2, 0});
  empty_window_case("a last window past the input", {1, 4, 4, 2, 3, 2, 2, 2, 2, 2, 0, 0});
  empty_window_case("a zero-sized window", {1, 4, 4, 2, 2, 2, 0, 2, 2, 2, 0, 0});
  if (!small) {
    max_case<float, std::int64_t>(overlapping);
    max_case<double, std::int32_t>(overlapping);
    max_case<double, std::int64_t>(odd);
    avg_case<float>(overlapping);
    avg_case<double>(overlapping);
    upsample_case<double>(2, 4, 3, 7, 3, 1);
  }
  return driver::result();
}
