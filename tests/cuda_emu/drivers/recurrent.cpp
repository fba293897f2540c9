// The recurrent kernel files (recurrent_lstm.cu, recurrent_gru.cu,
// recurrent_simple_rnn.cu, with recurrent_sequence.cuh, recurrent_persistent.cuh,
// recurrent_common.cuh and gemm.cu for the GEMMs) in the emulator against the
// float64 CPU kernels: the per-step and the persistent (cooperative, grid.sync)
// forward, training and inference, with and without a timestep mask and a
// recurrent dropout mask; the backward fed the reference's forward caches. GRU in
// both forms (reset_after=False has no persistent kernel). Batch 1, odd units.
//
// Written against the launchers' signatures of 2026-12-06 (before the argument
// structs of the recurrent refactoring).
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "check.h"
#include "fusednn/recurrent.h"

namespace {

using driver::expect_close;
using driver::widen;
using fusednn::RecurrentShape;
using fusednn::cuda::RecurrentAlgorithm;
using Floats = std::vector<float>;
using Doubles = std::vector<double>;

// Every output is a chain of at most T = 4 steps, each a sum of F + U + 1 <= 13
// products and a gate nonlinearity; the gradients add sums over N * T <= 12
// rows. Float32 rounding: under 30 roundings of O(1) terms per step, so about
// 4 * 30 * 6e-8 = 7e-6, plus libm's expf/tanhf against the CPU's polynomials (a
// few ulps per step): rtol = atol = 3e-5 bounds both with room.
constexpr double kTolerance = 3e-5;

Floats narrow(const Doubles& v) { return {v.begin(), v.end()}; }

template <typename T>
const T* or_null(const std::vector<T>& v, bool use) {
  return use ? v.data() : nullptr;
}

enum class Cell { kLstm, kGruAfter, kGruBefore, kSimpleRnn };

struct Case {
  Cell cell;
  RecurrentShape s;
  bool masked, recurrent_masked, training;
  RecurrentAlgorithm algorithm;
};

int gates_of(Cell c) { return c == Cell::kLstm ? 4 : c == Cell::kSimpleRnn ? 1 : 3; }

std::string describe(const Case& c) {
  const char* names[] = {"lstm", "gru(reset_after)", "gru(reset_before)", "simple_rnn"};
  return std::string(names[int(c.cell)]) + " N=" + std::to_string(c.s.N) +
         " T=" + std::to_string(c.s.T) + " F=" + std::to_string(c.s.F) +
         " U=" + std::to_string(c.s.U) + (c.masked ? " mask" : "") +
         (c.recurrent_masked ? " recurrent_mask" : "") + (c.training ? " training" : " inference") +
         " " + fusednn::cuda::algorithm_name(c.algorithm);
}

// The arrays of one problem in one precision.
template <typename Real>
struct Arrays {
  std::vector<Real> x, h0, c0, kernel, recurrent_kernel, bias, recurrent_mask, dy, dh_T, dc_T;
  std::vector<Real> y, h_T, c_T, gates, cell, h_in, h_prev, recurrent_h;
  std::vector<Real> dx, dh0, dc0, dkernel, drecurrent_kernel, dbias, dgates, dgates_recurrent;
};

void run_case(const Case& c) {
  const RecurrentShape& s = c.s;
  const std::int64_t N = s.N, T = s.T, F = s.F, U = s.U, G = gates_of(c.cell) * U;
  const bool gru = c.cell == Cell::kGruAfter || c.cell == Cell::kGruBefore;
  const bool reset_after = c.cell == Cell::kGruAfter;
  Arrays<float> f;
  f.x = driver::uniform<float>(N * T * F, -1, 1);
  f.h0 = driver::uniform<float>(N * U, -1, 1);
  f.c0 = driver::uniform<float>(N * U, -1, 1);
  f.kernel = driver::uniform<float>(F * G, -0.5, 0.5);
  f.recurrent_kernel = driver::uniform<float>(U * G, -0.5, 0.5);
  f.bias = driver::uniform<float>(2 * G, -0.5, 0.5);
  f.recurrent_mask = driver::uniform<float>(N * U, 0, 2);
  f.dy = driver::uniform<float>(N * T * U, -1, 1);
  f.dh_T = driver::uniform<float>(N * U, -1, 1);
  f.dc_T = driver::uniform<float>(N * U, -1, 1);
  std::vector<std::uint8_t> mask(N * T);
  for (std::int64_t i = 0; i < N * T; ++i) mask[i] = (i * 5 + 1) % 3 != 0;
  const std::uint8_t* m = c.masked ? mask.data() : nullptr;
  const bool rm = c.recurrent_masked;

  Arrays<double> d;
  d.x = widen(f.x), d.h0 = widen(f.h0), d.c0 = widen(f.c0), d.kernel = widen(f.kernel);
  d.recurrent_kernel = widen(f.recurrent_kernel), d.bias = widen(f.bias);
  d.recurrent_mask = widen(f.recurrent_mask), d.dy = widen(f.dy), d.dh_T = widen(f.dh_T);
  d.dc_T = widen(f.dc_T);
  const std::int64_t NTU = N * T * U, NTG = N * T * G, NU = N * U;
  for (auto* a : {&f.y, &f.cell, &f.h_in, &f.h_prev, &f.recurrent_h}) *a = driver::poisoned<float>(NTU);
  for (auto* a : {&f.h_T, &f.c_T}) *a = driver::poisoned<float>(NU);
  f.gates = driver::poisoned<float>(NTG);
  for (auto* a : {&d.y, &d.cell, &d.h_in, &d.h_prev, &d.recurrent_h}) a->assign(NTU, 0);
  for (auto* a : {&d.h_T, &d.c_T}) a->assign(NU, 0);
  d.gates.assign(NTG, 0);
  Floats workspace = driver::poisoned<float>(
      fusednn::cuda::workspace_elements(fusednn::cuda::RecurrentKernel::kForward, s));
  const bool tr = c.training;
  const std::string name = describe(c);

  // ----- forward
  RecurrentAlgorithm ran = RecurrentAlgorithm::kAuto;
  const float* frm = or_null(f.recurrent_mask, rm);
  const double* drm = or_null(d.recurrent_mask, rm);
  switch (c.cell) {
    case Cell::kLstm:
      ran = fusednn::cuda::lstm_forward(
          s, c.algorithm, f.x.data(), f.h0.data(), f.c0.data(), f.kernel.data(),
          f.recurrent_kernel.data(), f.bias.data(), m, frm, f.y.data(), f.h_T.data(),
          f.c_T.data(), f.gates.data(), tr ? f.cell.data() : nullptr,
          tr ? f.h_in.data() : nullptr, workspace.data(), 0);
      fusednn::cpu::lstm_forward<double>(s, d.x.data(), d.h0.data(), d.c0.data(),
                                         d.kernel.data(), d.recurrent_kernel.data(),
                                         d.bias.data(), m, drm, d.y.data(), d.h_T.data(),
                                         d.c_T.data(), d.gates.data(), d.cell.data(),
                                         d.h_in.data());
      break;
    case Cell::kGruAfter:
    case Cell::kGruBefore:
      ran = fusednn::cuda::gru_forward(
          s, c.algorithm, reset_after, f.x.data(), f.h0.data(), f.kernel.data(),
          f.recurrent_kernel.data(), f.bias.data(), m, frm, f.y.data(), f.h_T.data(),
          f.gates.data(), tr ? f.h_in.data() : nullptr, tr ? f.h_prev.data() : nullptr,
          tr ? f.recurrent_h.data() : nullptr, workspace.data(), 0);
      fusednn::cpu::gru_forward<double>(s, reset_after, d.x.data(), d.h0.data(), d.kernel.data(),
                                        d.recurrent_kernel.data(), d.bias.data(), m, drm,
                                        d.y.data(), d.h_T.data(), d.gates.data(), d.h_in.data(),
                                        d.h_prev.data(), d.recurrent_h.data());
      break;
    case Cell::kSimpleRnn:
      ran = fusednn::cuda::simple_rnn_forward(
          s, c.algorithm, fusednn::RnnActivation::kTanh, f.x.data(), f.h0.data(),
          f.kernel.data(), f.recurrent_kernel.data(), f.bias.data(), m, frm, f.y.data(),
          f.h_T.data(), f.gates.data(), tr ? f.h_in.data() : nullptr, workspace.data(), 0);
      fusednn::cpu::simple_rnn_forward<double>(
          s, fusednn::RnnActivation::kTanh, d.x.data(), d.h0.data(), d.kernel.data(),
          d.recurrent_kernel.data(), d.bias.data(), m, drm, d.y.data(), d.h_T.data(),
          d.gates.data(), d.h_in.data());
      break;
  }
  if (ran != c.algorithm) {
    std::printf("FAIL %s ran %s\n", name.c_str(), fusednn::cuda::algorithm_name(ran));
    ++driver::failures();
  }
  expect_close(name + " y", f.y, d.y, kTolerance, kTolerance);
  expect_close(name + " h_T", f.h_T, d.h_T, kTolerance, kTolerance);
  if (c.cell == Cell::kLstm) expect_close(name + " c_T", f.c_T, d.c_T, kTolerance, kTolerance);
  if (!tr) return;
  // The gates cache at masked steps is scratch that the backward never reads
  // (it returns before touching it): the per-step path leaves x W + h R there, the
  // persistent kernel x W. Only valid steps are compared.
  Floats valid_gates;
  Doubles want_gates;
  for (std::int64_t nt = 0; nt < N * T; ++nt) {
    if (m != nullptr && m[nt] == 0) continue;
    valid_gates.insert(valid_gates.end(), f.gates.begin() + nt * G, f.gates.begin() + (nt + 1) * G);
    want_gates.insert(want_gates.end(), d.gates.begin() + nt * G, d.gates.begin() + (nt + 1) * G);
  }
  expect_close(name + " gates (valid steps)", valid_gates, want_gates, kTolerance, kTolerance);
  expect_close(name + " h_in", f.h_in, d.h_in, kTolerance, kTolerance);

  // ----- backward, from the reference's caches
  const Floats gates = narrow(d.gates), cell = narrow(d.cell), h_in = narrow(d.h_in),
               h_prev = narrow(d.h_prev), recurrent_h = narrow(d.recurrent_h);
  const std::int64_t bias_size = gru && reset_after ? 2 * G : G;
  for (auto* a : {&f.dx}) *a = driver::poisoned<float>(N * T * F);
  f.dh0 = driver::poisoned<float>(NU);
  f.dc0 = driver::poisoned<float>(NU);
  f.dkernel = driver::poisoned<float>(F * G);
  f.drecurrent_kernel = driver::poisoned<float>(U * G);
  f.dbias = driver::poisoned<float>(bias_size);
  f.dgates = driver::poisoned<float>(NTG);
  f.dgates_recurrent = driver::poisoned<float>(NTG);
  d.dx.assign(N * T * F, 0), d.dh0.assign(NU, 0), d.dc0.assign(NU, 0), d.dkernel.assign(F * G, 0);
  d.drecurrent_kernel.assign(U * G, 0), d.dbias.assign(bias_size, 0), d.dgates.assign(NTG, 0);
  d.dgates_recurrent.assign(NTG, 0);
  workspace = driver::poisoned<float>(
      fusednn::cuda::workspace_elements(fusednn::cuda::RecurrentKernel::kBackward, s));
  switch (c.cell) {
    case Cell::kLstm:
      fusednn::cuda::lstm_backward(s, f.x.data(), f.c0.data(), f.kernel.data(),
                                   f.recurrent_kernel.data(), m, frm, gates.data(), cell.data(),
                                   h_in.data(), f.dy.data(), f.dh_T.data(), f.dc_T.data(),
                                   f.dx.data(), f.dh0.data(), f.dc0.data(), f.dkernel.data(),
                                   f.drecurrent_kernel.data(), f.dbias.data(), f.dgates.data(),
                                   workspace.data(), 0);
      fusednn::cpu::lstm_backward<double>(
          s, d.x.data(), d.c0.data(), d.kernel.data(), d.recurrent_kernel.data(), m, drm,
          d.gates.data(), d.cell.data(), d.h_in.data(), d.dy.data(), d.dh_T.data(),
          d.dc_T.data(), d.dx.data(), d.dh0.data(), d.dc0.data(), d.dkernel.data(),
          d.drecurrent_kernel.data(), d.dbias.data(), d.dgates.data());
      expect_close(name + " dc0", f.dc0, d.dc0, kTolerance, kTolerance);
      break;
    case Cell::kGruAfter:
    case Cell::kGruBefore:
      fusednn::cuda::gru_backward(s, reset_after, f.x.data(), f.kernel.data(),
                                  f.recurrent_kernel.data(), m, frm, gates.data(), h_in.data(),
                                  h_prev.data(), recurrent_h.data(), f.dy.data(), f.dh_T.data(),
                                  f.dx.data(), f.dh0.data(), f.dkernel.data(),
                                  f.drecurrent_kernel.data(), f.dbias.data(), f.dgates.data(),
                                  f.dgates_recurrent.data(), workspace.data(), 0);
      fusednn::cpu::gru_backward<double>(
          s, reset_after, d.x.data(), d.kernel.data(), d.recurrent_kernel.data(), m, drm,
          d.gates.data(), d.h_in.data(), d.h_prev.data(), d.recurrent_h.data(), d.dy.data(),
          d.dh_T.data(), d.dx.data(), d.dh0.data(), d.dkernel.data(),
          d.drecurrent_kernel.data(), d.dbias.data(), d.dgates.data(), d.dgates_recurrent.data());
      break;
    case Cell::kSimpleRnn:
      fusednn::cuda::simple_rnn_backward(
          s, fusednn::RnnActivation::kTanh, f.x.data(), f.kernel.data(),
          f.recurrent_kernel.data(), m, frm, gates.data(), h_in.data(), f.dy.data(),
          f.dh_T.data(), f.dx.data(), f.dh0.data(), f.dkernel.data(), f.drecurrent_kernel.data(),
          f.dbias.data(), f.dgates.data(), workspace.data(), 0);
      fusednn::cpu::simple_rnn_backward<double>(
          s, fusednn::RnnActivation::kTanh, d.x.data(), d.kernel.data(),
          d.recurrent_kernel.data(), m, drm, d.gates.data(), d.h_in.data(), d.dy.data(),
          d.dh_T.data(), d.dx.data(), d.dh0.data(), d.dkernel.data(),
          d.drecurrent_kernel.data(), d.dbias.data(), d.dgates.data());
      break;
  }
  expect_close(name + " dx", f.dx, d.dx, kTolerance, kTolerance);
  expect_close(name + " dh0", f.dh0, d.dh0, kTolerance, kTolerance);
  expect_close(name + " dkernel", f.dkernel, d.dkernel, kTolerance, kTolerance);
  expect_close(name + " drecurrent_kernel", f.drecurrent_kernel, d.drecurrent_kernel, kTolerance,
               kTolerance);
  expect_close(name + " dbias", f.dbias, d.dbias, kTolerance, kTolerance);
}

}  // namespace

int main(int argc, char** argv) {
  const bool small = argc > 1 && std::string(argv[1]) == "--small";
  const RecurrentShape one{1, 2, 3, 5}, odd{3, 4, 5, 7};
  const auto per_step = RecurrentAlgorithm::kPerStep, persistent = RecurrentAlgorithm::kPersistent;
  std::vector<Case> cases = {
      {Cell::kLstm, odd, true, true, true, persistent},
      {Cell::kGruAfter, one, false, true, true, per_step},
      {Cell::kSimpleRnn, odd, true, false, false, persistent},
  };
  if (!small) {
    for (Cell cell : {Cell::kLstm, Cell::kGruAfter, Cell::kGruBefore, Cell::kSimpleRnn}) {
      for (bool masked : {false, true}) {
        for (auto algorithm : {per_step, persistent}) {
          if (cell == Cell::kGruBefore && algorithm == persistent) continue;
          cases.push_back({cell, odd, masked, masked, true, algorithm});
          cases.push_back({cell, one, !masked, masked, false, algorithm});
        }
      }
    }
  }
  for (const Case& c : cases) run_case(c);
  return driver::result();
}
