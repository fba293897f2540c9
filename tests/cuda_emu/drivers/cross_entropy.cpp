// cross_entropy.cu in the emulator against the CPU kernel in float64: both
// row-group sizes (a warp per row for C <= 1024, a block per row above), a last
// block with idle warps, batch 1, masked (-inf) logits, bad labels.
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "check.h"
#include "fusednn/cross_entropy.h"

namespace {

using driver::expect_close;
using driver::widen;

// The kernel sums up to C / 32 exps per thread serially, then in a tree of 5 (or
// 13) levels: relative error about (C / 32 + 13) float32 ulps. For C = 1500 that is
// 60 * 6e-8 = 3.6e-6; rtol 1e-5 bounds it with room. atol 1e-6 covers the
// cancellation in p - 1 at the label (absolute error a few ulps of 1).
constexpr double kRtol = 1e-5, kAtol = 1e-6;

void sparse_case(std::int64_t N, std::int64_t C, bool masked, bool bad_label) {
  std::vector<float> logits = driver::uniform<float>(N * C, -4, 4);
  std::vector<std::int64_t> labels(N);
  for (std::int64_t n = 0; n < N; ++n) labels[n] = (n * 7 + 3) % C;
  if (masked) {
    for (std::int64_t n = 0; n < N; ++n) {
      for (std::int64_t c = 0; c < C; c += 3) {
        if (c != labels[n]) logits[n * C + c] = -INFINITY;
      }
    }
  }
  if (bad_label) labels[N - 1] = C;
  const float scale = 1.f / static_cast<float>(N);
  auto losses = driver::poisoned<float>(N);
  auto dlogits = driver::poisoned<float>(N * C);
  fusednn::cuda::sparse_softmax_cross_entropy(logits.data(), labels.data(), losses.data(),
                                              dlogits.data(), N, C, scale, 0);
  const auto logits64 = widen(logits);
  std::vector<double> want_losses(N), want_dlogits(N * C);
  fusednn::cpu::sparse_softmax_cross_entropy<double>(logits64.data(), labels.data(),
                                                     want_losses.data(), want_dlogits.data(),
                                                     bad_label ? N - 1 : N, C, scale);
  if (bad_label) {  // the kernel's defined answer for a label out of range: NaN
    want_losses[N - 1] = NAN;
    for (std::int64_t c = 0; c < C; ++c) want_dlogits[(N - 1) * C + c] = NAN;
  }
  const std::string name = "sparse N=" + std::to_string(N) + " C=" + std::to_string(C) +
                           (masked ? " masked" : "") + (bad_label ? " bad label" : "");
  expect_close(name + " losses", losses, want_losses, kRtol, kAtol);
  expect_close(name + " dlogits", dlogits, want_dlogits, kRtol, kAtol * scale);
}

void dense_case(std::int64_t N, std::int64_t C, bool masked) {
  std::vector<float> logits = driver::uniform<float>(N * C, -4, 4);
  std::vector<float> targets = driver::uniform<float>(N * C, 0, 1);
  if (masked) {
    for (std::int64_t i = 0; i < N * C; i += 4) {
      logits[i] = -INFINITY;
      targets[i] = 0.f;
    }
  }
  const float scale = 0.5f;
  auto losses = driver::poisoned<float>(N);
  auto dlogits = driver::poisoned<float>(N * C);
  fusednn::cuda::softmax_cross_entropy(logits.data(), targets.data(), losses.data(),
                                       dlogits.data(), N, C, scale, 0);
  const auto logits64 = widen(logits), targets64 = widen(targets);
  std::vector<double> want_losses(N), want_dlogits(N * C);
  fusednn::cpu::softmax_cross_entropy<double>(logits64.data(), targets64.data(),
                                              want_losses.data(), want_dlogits.data(), N, C,
                                              scale);
  const std::string name =
      "dense N=" + std::to_string(N) + " C=" + std::to_string(C) + (masked ? " masked" : "");
  // Dense losses add C target terms: the same error bound, scaled by the
  // target sum (up to C / 2 here) against a loss of about that size.
  expect_close(name + " losses", losses, want_losses, kRtol, kAtol * C);
  expect_close(name + " dlogits", dlogits, want_dlogits, kRtol, kAtol);
}

}  // namespace

int main(int argc, char** argv) {
  const bool small = argc > 1 && std::string(argv[1]) == "--small";
  sparse_case(1, 1, false, false);
  sparse_case(9, 10, false, false);  // two blocks of 8 warps, the second with one busy warp
  sparse_case(13, 37, true, true);
  dense_case(1, 5, false);
  dense_case(11, 33, true);
  if (!small) {
    sparse_case(3, 1500, true, false);  // a block per row
    dense_case(2, 1027, true);
    sparse_case(70, 3, false, false);
  }
  return driver::result();
}
