// conv_pool.cu (conv + relu/linear + max pooling fused, FMA and TF32 paths) in
// the emulator against the float64 CPU convolution followed by the CPU max
// pooling. Pooling windows of 2x2, 3x1 and 1x1; conv outputs whose last rows
// or columns no window covers; filters not a multiple of 4; more windows than one
// 128-row tile holds.
#include <cstdint>
#include <string>
#include <vector>

#include "check.h"
#include "conv_reference.h"
#include "fusednn/conv_pool.h"
#include "fusednn/pooling.h"

namespace {

using driver::absolute;
using driver::expect_within;
using driver::widen;
using fusednn::Conv2dShape;
using fusednn::Epilogue;

template <Epilogue E, bool kTF32>
void conv_pool_case(const Conv2dShape& s, std::int64_t PH, std::int64_t PW) {
  const std::string name = "N=" + std::to_string(s.N) + " OH=" + std::to_string(s.OH) +
                           " OW=" + std::to_string(s.OW) + " F=" + std::to_string(s.F) +
                           " pool " + std::to_string(PH) + "x" + std::to_string(PW) +
                           (E == Epilogue::kRelu ? " relu" : " linear") +
                           (kTF32 ? " tf32" : " fma");
  const std::int64_t nx = s.N * s.H * s.W * s.C, nw = s.KH * s.KW * s.C * s.F,
                     ny = s.N * s.OH * s.OW * s.F;
  const std::int64_t POH = s.OH / PH, POW = s.OW / PW, np = s.N * POH * POW * s.F;
  const auto x = driver::uniform<float>(nx, -1, 1), w = driver::uniform<float>(nw, -1, 1),
             bias = driver::uniform<float>(s.F, -1, 1);
  auto y = driver::poisoned<float>(np);
  auto argmax = driver::poisoned<std::int32_t>(np);
  fusednn::cuda::conv2d_max_pool2d_forward<E, kTF32>(s, PH, PW, x.data(), w.data(), bias.data(),
                                                     y.data(), argmax.data(), 0);

  const auto x64 = widen(x), w64 = widen(w), b64 = widen(bias);
  const auto ax = absolute(x), aw = absolute(w), ab = absolute(bias);
  std::vector<double> conv(ny), magnitude(ny);
  fusednn::cpu::conv2d_forward<double, E>(s, x64.data(), w64.data(), b64.data(), conv.data());
  fusednn::cpu::conv2d_forward<double, Epilogue::kLinear>(s, ax.data(), aw.data(), ab.data(),
                                                          magnitude.data());
  const auto conv_bound = driver::bound(magnitude, s.KH * s.KW * s.C, kTF32);
  const fusednn::Pool2dGeometry g{s.N, s.OH, s.OW, s.F, POH, POW, PH, PW, PH, PW, 0, 0};
  std::vector<double> pooled(np);
  std::vector<std::int32_t> where(np);
  fusednn::cpu::max_pool2d_forward<double, std::int32_t>(conv.data(), pooled.data(),
                                                         where.data(), g);

  // y is the conv value at the kernel's argmax, and that value is a maximum of
  // its window up to the two elements' bounds (near-ties may pick either).
  std::vector<double> at_argmax(np), at_argmax_bound(np), tie_bound(np);
  for (std::int64_t i = 0; i < np; ++i) {
    const std::int64_t f = i % s.F, q = i / s.F, n = q / (POH * POW);
    const std::int64_t ph = q / POW % POH, pw = q % POW;
    const std::int32_t a = argmax[i];
    const std::int64_t h = a / s.OW, wcol = a % s.OW;
    const bool inside = a >= 0 && h / PH == ph && wcol / PW == pw;
    const std::int64_t at = ((n * s.OH + h) * s.OW + wcol) * s.F + f;
    const std::int64_t best = (n * s.OH * s.OW + where[i]) * s.F + f;
    at_argmax[i] = inside ? conv[at] : NAN;
    at_argmax_bound[i] = inside ? conv_bound[at] : 0.0;
    tie_bound[i] = (inside ? conv_bound[at] : 0.0) + conv_bound[best];
  }
  expect_within(name + " y", y, at_argmax, at_argmax_bound);
  expect_within(name + " argmax", at_argmax, pooled, tie_bound);
}

}  // namespace

int main(int argc, char** argv) {
  const bool small = argc > 1 && std::string(argv[1]) == "--small";
  using driver::conv_shape;
  const Conv2dShape odd = conv_shape(1, 6, 7, 3, 5, 3, 3, 1, 1, 1, 1, 1, 1);     // 6 x 7 out
  const Conv2dShape wide = conv_shape(2, 13, 12, 4, 67, 3, 3, 1, 1, 1, 1, 1, 1);  // 13 x 12 out
  conv_pool_case<Epilogue::kRelu, false>(odd, 2, 2);
  conv_pool_case<Epilogue::kLinear, true>(odd, 3, 1);
  if (!small) {
    conv_pool_case<Epilogue::kLinear, false>(wide, 2, 2);
    conv_pool_case<Epilogue::kRelu, true>(wide, 2, 2);
    conv_pool_case<Epilogue::kRelu, false>(odd, 1, 1);
  }
  return driver::result();
}
