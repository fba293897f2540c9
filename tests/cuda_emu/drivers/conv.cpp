// conv.cu (with conv_implicit_gemm.cuh) in the emulator against the float64 CPU
// convolution: forward, data gradient (dx), kernel gradient (dw, split-K with
// atomics), bias gradient (db), and the transposed forward (backward_data), with
// the linear and the relu epilogue, on the FMA and the TF32 tensor-core paths.
// Shapes: batch 1, odd sizes, channels and filters not multiples of 4, strides,
// dilation, padding, and more rows (> 128) and filters (> 64) than one tile.
#include <cstdint>
#include <string>
#include <vector>

#include "check.h"
#include "conv_reference.h"

namespace {

using driver::absolute;
using driver::bound;
using driver::expect_within;
using driver::widen;
using fusednn::Conv2dShape;
using fusednn::Epilogue;

std::string describe(const Conv2dShape& s) {
  return "N=" + std::to_string(s.N) + " H=" + std::to_string(s.H) + " W=" + std::to_string(s.W) +
         " C=" + std::to_string(s.C) + " F=" + std::to_string(s.F) + " K=" +
         std::to_string(s.KH) + "x" + std::to_string(s.KW);
}

template <Epilogue E, bool kTF32>
void conv_case(const Conv2dShape& s) {
  const std::string name = describe(s) + (E == Epilogue::kRelu ? " relu" : " linear") +
                           (kTF32 ? " tf32" : " fma");
  const std::int64_t nx = s.N * s.H * s.W * s.C, nw = s.KH * s.KW * s.C * s.F,
                     ny = s.N * s.OH * s.OW * s.F;
  const auto x = driver::uniform<float>(nx, -1, 1), w = driver::uniform<float>(nw, -1, 1),
             bias = driver::uniform<float>(s.F, -1, 1), dy = driver::uniform<float>(ny, -1, 1);
  const auto x64 = widen(x), w64 = widen(w), b64 = widen(bias), dy64 = widen(dy);
  const auto ax = absolute(x), aw = absolute(w), ab = absolute(bias), ady = absolute(dy);

  // forward
  auto y = driver::poisoned<float>(ny);
  fusednn::cuda::conv2d_forward<E, kTF32>(s, x.data(), w.data(), bias.data(), y.data(), 0);
  std::vector<double> want_y(ny), magnitude_y(ny);
  fusednn::cpu::conv2d_forward<double, E>(s, x64.data(), w64.data(), b64.data(), want_y.data());
  fusednn::cpu::conv2d_forward<double, Epilogue::kLinear>(s, ax.data(), aw.data(), ab.data(),
                                                          magnitude_y.data());
  const std::int64_t K_forward = s.KH * s.KW * s.C;
  expect_within(name + " y", y, want_y, bound(magnitude_y, K_forward, kTF32));

  // backward: the gate uses the reference y, the same on both sides
  std::vector<float> y_gate(want_y.begin(), want_y.end());
  const auto y_gate64 = widen(y_gate);
  auto dx = driver::poisoned<float>(nx), dw = driver::poisoned<float>(nw),
       db = driver::poisoned<float>(s.F);
  fusednn::cuda::conv2d_backward<E, kTF32>(s, x.data(), y_gate.data(), dy.data(), w.data(),
                                           dx.data(), dw.data(), db.data(), 0);
  std::vector<double> want_dx(nx), want_dw(nw), want_db(s.F);
  fusednn::cpu::conv2d_backward<double, E>(s, x64.data(), y_gate64.data(), dy64.data(),
                                           w64.data(), want_dx.data(), want_dw.data(),
                                           want_db.data());
  // Magnitudes without the gate: it only removes terms.
  std::vector<double> m_dx(nx), m_dw(nw), m_db(s.F);
  fusednn::cpu::conv2d_backward<double, Epilogue::kLinear>(s, ax.data(), nullptr, ady.data(),
                                                           aw.data(), m_dx.data(), m_dw.data(),
                                                           m_db.data());
  expect_within(name + " dx", dx, want_dx, bound(m_dx, s.KH * s.KW * s.F, kTF32));
  expect_within(name + " dw", dw, want_dw, bound(m_dw, s.N * s.OH * s.OW, kTF32));
  // db is a float32 sum without TF32.
  expect_within(name + " db", db, want_db, bound(m_db, s.N * s.OH * s.OW, false));

  // backward_data (a transposed convolution's forward): out is (N, H, W, C)
  auto out = driver::poisoned<float>(nx);
  const auto cbias = driver::uniform<float>(s.C, -1, 1);
  const auto cb64 = widen(cbias), acb = absolute(cbias);
  fusednn::cuda::conv2d_backward_data<E, kTF32>(s, dy.data(), w.data(), cbias.data(), out.data(),
                                                0);
  std::vector<double> want_out(nx), m_out(nx);
  fusednn::cpu::conv2d_backward_data<double, E>(s, dy64.data(), w64.data(), cb64.data(),
                                                want_out.data());
  fusednn::cpu::conv2d_backward_data<double, Epilogue::kLinear>(s, ady.data(), aw.data(),
                                                                acb.data(), m_out.data());
  expect_within(name + " backward_data", out, want_out, bound(m_out, s.KH * s.KW * s.F, kTF32));
}

}  // namespace

int main(int argc, char** argv) {
  const bool small = argc > 1 && std::string(argv[1]) == "--small";
  using driver::conv_shape;
  const Conv2dShape tiny = conv_shape(1, 5, 7, 3, 5, 3, 3, 1, 1, 1, 1, 1, 1);
  const Conv2dShape strided = conv_shape(2, 6, 5, 6, 9, 2, 3, 2, 1, 1, 2, 1, 2);
  const Conv2dShape two_tiles = conv_shape(1, 12, 12, 4, 66, 3, 3, 1, 1, 1, 1, 1, 1);
  conv_case<Epilogue::kLinear, false>(tiny);
  conv_case<Epilogue::kRelu, true>(tiny);
  if (!small) {
    conv_case<Epilogue::kRelu, false>(strided);
    conv_case<Epilogue::kLinear, true>(strided);
    conv_case<Epilogue::kLinear, false>(two_tiles);
    conv_case<Epilogue::kRelu, true>(two_tiles);
  }
  return driver::result();
}
