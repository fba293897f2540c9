// conv.cu (with conv_implicit_gemm.cuh) in the emulator against the float64 CPU
// convolution: forward, data gradient (dx), kernel gradient (dw, split-K with
// atomics), bias gradient (db), and the transposed forward (backward_data), with
// the linear and the relu epilogue, on the FMA and the TF32 tensor-core paths.
// Shapes: batch 1, odd sizes, channels and filters not multiples of 4, strides,
// dilation, padding, and more rows (> 128) and filters (> 64) than one tile.
// Products with at most 8 columns run on the narrow tile (F <= 8 forward and
// kernel gradient, C <= 8 data gradient and transposed forward): an RGB
// Conv2DTranspose output, a 1x1 conv to one filter, dx of a 3-channel input;
// the others on the wide tile. Then deterministic mode (fusednn/determinism.h)
// against the atomic sums.
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "check.h"
#include "conv_reference.h"
#include "cuda_emu.h"
#include "fusednn/determinism.h"

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

// The narrow tile's point: a 1x1 conv to one filter asks for fewer threads
// than output rows (the wide tile launches 256 threads per 128 rows, two per
// row; the narrow one 64 per 256).
void narrow_tile_work_case() {
  const Conv2dShape s = driver::conv_shape(3, 10, 11, 7, 1, 1, 1, 1, 1, 1, 1, 0, 0);
  const auto x = driver::uniform<float>(s.N * s.H * s.W * s.C, -1, 1),
             w = driver::uniform<float>(s.C * s.F, -1, 1);
  auto y = driver::poisoned<float>(s.N * s.OH * s.OW * s.F);
  const long long before = cuda_emu::threads_launched();
  fusednn::cuda::conv2d_forward<Epilogue::kLinear, false>(s, x.data(), w.data(), nullptr,
                                                          y.data(), 0);
  const long long threads = cuda_emu::threads_launched() - before;
  const std::int64_t rows = s.N * s.OH * s.OW;
  driver::expect_true("1x1 conv to one filter: fewer threads than output rows",
                      threads < rows,
                      std::to_string(threads) + " threads for " + std::to_string(rows) + " rows");
}

// dw (split over K) and db (split over row blocks) twice per mode. Each launch
// runs its blocks in a new order (the emulator seeds the order by the launch's
// count), so the atomic sums come out in different orders: their bits differ,
// which shows that the runs were scheduled differently; the fixed-order sums of
// deterministic mode must be bitwise equal. Both within the float64 bound.
template <bool kTF32>
void determinism_case(const Conv2dShape& s) {
  const std::string name = describe(s) + (kTF32 ? " tf32" : " fma");
  const std::int64_t nx = s.N * s.H * s.W * s.C, nw = s.KH * s.KW * s.C * s.F,
                     ny = s.N * s.OH * s.OW * s.F;
  const auto x = driver::uniform<float>(nx, -1, 1), w = driver::uniform<float>(nw, -1, 1),
             dy = driver::uniform<float>(ny, -1, 1);
  std::vector<double> want_dw(nw), want_db(s.F), m_dw(nw), m_db(s.F);
  fusednn::cpu::conv2d_backward<double, Epilogue::kLinear>(s, widen(x).data(), nullptr,
                                                           widen(dy).data(), widen(w).data(),
                                                           nullptr, want_dw.data(), want_db.data());
  fusednn::cpu::conv2d_backward<double, Epilogue::kLinear>(
      s, absolute(x).data(), nullptr, absolute(dy).data(), absolute(w).data(), nullptr,
      m_dw.data(), m_db.data());
  const auto dw_bound = bound(m_dw, s.N * s.OH * s.OW, kTF32);
  const auto db_bound = bound(m_db, s.N * s.OH * s.OW, false);

  auto run = [&](bool deterministic) {
    fusednn::deterministic_reductions().store(deterministic);
    auto dw = driver::poisoned<float>(nw), db = driver::poisoned<float>(s.F);
    fusednn::cuda::conv2d_backward<Epilogue::kLinear, kTF32>(s, x.data(), nullptr, dy.data(),
                                                             w.data(), nullptr, dw.data(),
                                                             db.data(), 0);
    const std::string mode = deterministic ? " deterministic" : " atomic";
    expect_within(name + mode + " dw", dw, want_dw, dw_bound);
    expect_within(name + mode + " db", db, want_db, db_bound);
    return std::make_pair(dw, db);
  };
  auto bitwise_equal = [](const std::vector<float>& a, const std::vector<float>& b) {
    return std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
  };
  const auto atomic_1 = run(false);
  const int queries = cuda_emu::host_queries();
  const auto atomic_2 = run(false);
  driver::expect_true(name + " atomic dw differs between two schedules",
                      !bitwise_equal(atomic_1.first, atomic_2.first),
                      "the runs did not schedule differently: the check below proves nothing");
  const auto fixed_1 = run(true), fixed_2 = run(true);
  driver::expect_true(name + " deterministic dw bitwise equal",
                      bitwise_equal(fixed_1.first, fixed_2.first));
  driver::expect_true(name + " deterministic db bitwise equal",
                      bitwise_equal(fixed_1.second, fixed_2.second));
  // The SM count is remembered per device (device_facts.cuh).
  driver::expect_true(name + " repeated backward: no host queries",
                      cuda_emu::host_queries() == queries,
                      std::to_string(cuda_emu::host_queries() - queries) + " queries");
}

}  // namespace

int main(int argc, char** argv) {
  const bool small = argc > 1 && std::string(argv[1]) == "--small";
  using driver::conv_shape;
  const Conv2dShape tiny = conv_shape(1, 5, 7, 3, 5, 3, 3, 1, 1, 1, 1, 1, 1);
  const Conv2dShape strided = conv_shape(2, 6, 5, 6, 9, 2, 3, 2, 1, 1, 2, 1, 2);
  const Conv2dShape two_tiles = conv_shape(1, 12, 12, 4, 66, 3, 3, 1, 1, 1, 1, 1, 1);
  // 330 rows: two narrow row tiles, the last partial.
  const Conv2dShape one_filter = conv_shape(3, 10, 11, 7, 1, 1, 1, 1, 1, 1, 1, 0, 0);
  // dx and the transposed forward to 3 channels (RGB) narrow, y and dw wide.
  const Conv2dShape rgb = conv_shape(2, 12, 10, 3, 16, 3, 3, 2, 2, 1, 1, 1, 1);
  // Every product on the wide tile.
  const Conv2dShape wide = conv_shape(1, 7, 6, 12, 10, 3, 3, 1, 1, 1, 1, 1, 1);
  conv_case<Epilogue::kLinear, false>(tiny);
  conv_case<Epilogue::kRelu, true>(tiny);
  conv_case<Epilogue::kRelu, false>(one_filter);
  narrow_tile_work_case();
  if (!small) {
    conv_case<Epilogue::kLinear, true>(one_filter);
    conv_case<Epilogue::kRelu, false>(rgb);
    conv_case<Epilogue::kLinear, true>(rgb);
    conv_case<Epilogue::kLinear, false>(wide);
    conv_case<Epilogue::kRelu, true>(wide);
    conv_case<Epilogue::kRelu, false>(strided);
    conv_case<Epilogue::kLinear, true>(strided);
    conv_case<Epilogue::kLinear, false>(two_tiles);
    conv_case<Epilogue::kRelu, true>(two_tiles);
  }
  // Pixels (K of dw) 1024: 8 splits of dw on the emulator's 4 SMs (2 row blocks
  // of db); 8192 in the full run: 16 splits, 16 row blocks.
  determinism_case<false>(small ? conv_shape(1, 32, 32, 3, 5, 3, 3, 1, 1, 1, 1, 1, 1)
                                : conv_shape(2, 64, 64, 3, 5, 3, 3, 1, 1, 1, 1, 1, 1));
  if (!small) determinism_case<true>(conv_shape(1, 40, 40, 2, 3, 1, 1, 1, 1, 1, 1, 0, 0));
  return driver::result();
}
