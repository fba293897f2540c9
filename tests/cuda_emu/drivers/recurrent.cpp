// The recurrent kernel files (recurrent_lstm.cu, recurrent_gru.cu,
// recurrent_simple_rnn.cu, with recurrent_sequence.cuh, recurrent_persistent.cuh,
// recurrent_common.cuh and gemm.cu for the GEMMs) in the emulator against the
// float64 CPU kernels: the per-step and the persistent (cooperative, grid.sync)
// forward, training and inference, with and without a timestep mask and a
// recurrent dropout mask; the backward fed the reference's forward caches. GRU in
// both forms (reset_after=False has no persistent kernel). Batch 1, odd units.
// Both sides are called through the same argument structs of fusednn/recurrent.h
// (cuda::recurrent_forward/backward in recurrent_entry.cu against
// cpu::recurrent_forward/backward), their caches laid out by cache_layout.
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "check.h"
#include "cuda_emu.h"
#include "fusednn/recurrent.h"

namespace {

using driver::expect_close;
using driver::widen;
using fusednn::RecurrentCache;
using fusednn::RecurrentCacheLayout;
using fusednn::RecurrentShape;
using fusednn::RecurrentSpec;
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
  RecurrentAlgorithm runs_as = RecurrentAlgorithm::kAuto;  // kAuto: the requested algorithm
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

// The arrays of one problem in one precision, and the argument structs over them
// (c0, c_T, dc_T and dc0 only for the LSTM, the recurrent mask only when used).
template <typename Real>
struct Problem {
  std::vector<Real> x, h0, c0, kernel, recurrent_kernel, bias, recurrent_mask, dy, dh_T, dc_T;
  std::vector<Real> y, h_T, c_T, cache;
  std::vector<Real> dx, dh0, dc0, dkernel, drecurrent_kernel, dbias, backward_workspace;

  fusednn::RecurrentInputs<Real> inputs(bool lstm, const std::uint8_t* mask, bool rm) const {
    return {x.data(), h0.data(), lstm ? c0.data() : nullptr, mask, or_null(recurrent_mask, rm)};
  }
  fusednn::RecurrentWeights<Real> weights() const {
    return {kernel.data(), recurrent_kernel.data(), bias.data()};
  }
  fusednn::RecurrentOutputs<Real> outputs(bool lstm) {
    return {y.data(), h_T.data(), lstm ? c_T.data() : nullptr};
  }
  fusednn::RecurrentOutputGradients<Real> output_gradients(bool lstm) const {
    return {dy.data(), dh_T.data(), lstm ? dc_T.data() : nullptr};
  }
  fusednn::RecurrentGradients<Real> gradients(bool lstm) {
    return {dx.data(), dh0.data(), lstm ? dc0.data() : nullptr, dkernel.data(),
            drecurrent_kernel.data(), dbias.data()};
  }
};

RecurrentSpec spec_of(Cell cell) {
  RecurrentSpec spec;
  spec.cell = cell == Cell::kLstm      ? fusednn::RecurrentCell::kLstm
              : cell == Cell::kSimpleRnn ? fusednn::RecurrentCell::kSimpleRnn
                                         : fusednn::RecurrentCell::kGru;
  spec.reset_after = cell != Cell::kGruBefore;
  spec.activation = fusednn::RnnActivation::kTanh;
  return spec;
}

void run_case(const Case& c) {
  const RecurrentShape& s = c.s;
  const RecurrentSpec spec = spec_of(c.cell);
  const std::int64_t N = s.N, T = s.T, F = s.F, U = s.U, G = gates_of(c.cell) * U;
  const bool lstm = c.cell == Cell::kLstm;
  const bool two_biases = c.cell == Cell::kGruAfter;
  Problem<float> f;
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

  Problem<double> d;
  d.x = widen(f.x), d.h0 = widen(f.h0), d.c0 = widen(f.c0), d.kernel = widen(f.kernel);
  d.recurrent_kernel = widen(f.recurrent_kernel), d.bias = widen(f.bias);
  d.recurrent_mask = widen(f.recurrent_mask), d.dy = widen(f.dy), d.dh_T = widen(f.dh_T);
  d.dc_T = widen(f.dc_T);
  const std::int64_t NTU = N * T * U, NU = N * U;
  const bool tr = c.training;
  // The reference always trains: its cache feeds both sides' backward.
  const RecurrentCacheLayout layout = fusednn::cache_layout(spec, s, tr, rm);
  const RecurrentCacheLayout training_layout = fusednn::cache_layout(spec, s, true, rm);
  f.y = driver::poisoned<float>(NTU);
  f.h_T = driver::poisoned<float>(NU), f.c_T = driver::poisoned<float>(NU);
  f.cache = driver::poisoned<float>(layout.elements);
  d.y.assign(NTU, 0), d.h_T.assign(NU, 0), d.c_T.assign(NU, 0);
  d.cache.assign(training_layout.elements, 0);
  Floats workspace = driver::poisoned<float>(
      fusednn::cuda::workspace_elements(fusednn::cuda::RecurrentKernel::kForward, s));
  const std::string name = describe(c);

  // ----- forward
  const RecurrentAlgorithm ran = fusednn::cuda::recurrent_forward(
      spec, s, c.algorithm, f.inputs(lstm, m, rm), f.weights(), f.outputs(lstm), tr,
      f.cache.data(), workspace.data(), 0);
  fusednn::cpu::recurrent_forward<double>(spec, s, d.inputs(lstm, m, rm), d.weights(),
                                          d.outputs(lstm), true, d.cache.data());
  if (ran != (c.runs_as == RecurrentAlgorithm::kAuto ? c.algorithm : c.runs_as)) {
    std::printf("FAIL %s ran %s\n", name.c_str(), fusednn::cuda::algorithm_name(ran));
    ++driver::failures();
  }
  expect_close(name + " y", f.y, d.y, kTolerance, kTolerance);
  expect_close(name + " h_T", f.h_T, d.h_T, kTolerance, kTolerance);
  if (lstm) expect_close(name + " c_T", f.c_T, d.c_T, kTolerance, kTolerance);
  if (!tr) return;
  const RecurrentCache<const float> got(layout, f.cache.data());
  const RecurrentCache<const double> want(training_layout, d.cache.data());
  // The gates cache at masked steps is scratch that the backward never reads
  // (it returns before touching it): the per-step path leaves x W + h R there, the
  // persistent kernel x W. Only valid steps are compared.
  Floats valid_gates;
  Doubles want_gates;
  for (std::int64_t nt = 0; nt < N * T; ++nt) {
    if (m != nullptr && m[nt] == 0) continue;
    valid_gates.insert(valid_gates.end(), got.gates + nt * G, got.gates + (nt + 1) * G);
    want_gates.insert(want_gates.end(), want.gates + nt * G, want.gates + (nt + 1) * G);
  }
  expect_close(name + " gates (valid steps)", valid_gates, want_gates, kTolerance, kTolerance);
  expect_close(name + " h_in", Floats(got.h_in, got.h_in + NTU), Doubles(want.h_in, want.h_in + NTU),
               kTolerance, kTolerance);

  // ----- backward, from the reference's cache
  const Floats cache = narrow(d.cache);
  const std::int64_t bias_size = two_biases ? 2 * G : G;
  f.dx = driver::poisoned<float>(N * T * F);
  f.dh0 = driver::poisoned<float>(NU), f.dc0 = driver::poisoned<float>(NU);
  f.dkernel = driver::poisoned<float>(F * G);
  f.drecurrent_kernel = driver::poisoned<float>(U * G);
  f.dbias = driver::poisoned<float>(bias_size);
  f.backward_workspace = driver::poisoned<float>(fusednn::backward_workspace_elements(spec, s));
  d.dx.assign(N * T * F, 0), d.dh0.assign(NU, 0), d.dc0.assign(NU, 0), d.dkernel.assign(F * G, 0);
  d.drecurrent_kernel.assign(U * G, 0), d.dbias.assign(bias_size, 0);
  d.backward_workspace.assign(fusednn::backward_workspace_elements(spec, s), 0);
  workspace = driver::poisoned<float>(
      fusednn::cuda::workspace_elements(fusednn::cuda::RecurrentKernel::kBackward, s));
  fusednn::cuda::recurrent_backward(spec, s, f.inputs(lstm, m, rm), f.weights(), cache.data(),
                                    f.output_gradients(lstm), f.gradients(lstm),
                                    f.backward_workspace.data(), workspace.data(), 0);
  fusednn::cpu::recurrent_backward<double>(spec, s, d.inputs(lstm, m, rm), d.weights(),
                                           d.cache.data(), d.output_gradients(lstm),
                                           d.gradients(lstm), d.backward_workspace.data());
  if (lstm) expect_close(name + " dc0", f.dc0, d.dc0, kTolerance, kTolerance);
  expect_close(name + " dx", f.dx, d.dx, kTolerance, kTolerance);
  expect_close(name + " dh0", f.dh0, d.dh0, kTolerance, kTolerance);
  expect_close(name + " dkernel", f.dkernel, d.dkernel, kTolerance, kTolerance);
  expect_close(name + " drecurrent_kernel", f.drecurrent_kernel, d.drecurrent_kernel, kTolerance,
               kTolerance);
  expect_close(name + " dbias", f.dbias, d.dbias, kTolerance, kTolerance);

  // Without dx (a model's first layer skips it): the same weight and state gradients.
  if (c.masked) return;  // one variant per cell and shape is enough
  f.dh0 = driver::poisoned<float>(NU), f.dc0 = driver::poisoned<float>(NU);
  f.dkernel = driver::poisoned<float>(F * G);
  f.drecurrent_kernel = driver::poisoned<float>(U * G);
  f.dbias = driver::poisoned<float>(bias_size);
  fusednn::RecurrentGradients<float> no_dx = f.gradients(lstm);
  no_dx.dx = nullptr;
  fusednn::cuda::recurrent_backward(spec, s, f.inputs(lstm, m, rm), f.weights(), cache.data(),
                                    f.output_gradients(lstm), no_dx, f.backward_workspace.data(),
                                    workspace.data(), 0);
  const std::string skip = name + " (no dx)";
  if (lstm) expect_close(skip + " dc0", f.dc0, d.dc0, kTolerance, kTolerance);
  expect_close(skip + " dh0", f.dh0, d.dh0, kTolerance, kTolerance);
  expect_close(skip + " dkernel", f.dkernel, d.dkernel, kTolerance, kTolerance);
  expect_close(skip + " drecurrent_kernel", f.drecurrent_kernel, d.drecurrent_kernel, kTolerance,
               kTolerance);
  expect_close(skip + " dbias", f.dbias, d.dbias, kTolerance, kTolerance);
}

// A shape outside the launchers' contract (T, F, U >= 1) is refused with
// std::invalid_argument where they are entered, before any kernel or the
// persistent planner runs (U = 0 would divide by zero there): the per-step and
// the automatic forward and the backward, for every cell.
void rejected_shape_case(const char* what, const RecurrentShape& s) {
  for (Cell cell : {Cell::kLstm, Cell::kGruAfter, Cell::kGruBefore, Cell::kSimpleRnn}) {
    const RecurrentSpec spec = spec_of(cell);
    const Floats x(std::max<std::int64_t>(s.N * s.T * s.F, 1), 1.f);
    const fusednn::RecurrentInputs<float> inputs{x.data()};
    int refused = 0;
    for (auto algorithm : {RecurrentAlgorithm::kPerStep, RecurrentAlgorithm::kAuto}) {
      try {
        fusednn::cuda::recurrent_forward(spec, s, algorithm, inputs, {}, {}, true, nullptr,
                                         nullptr, 0);
      } catch (const std::invalid_argument&) {
        ++refused;
      }
    }
    try {
      fusednn::cuda::recurrent_backward(spec, s, inputs, {}, nullptr, {}, {}, nullptr, nullptr, 0);
    } catch (const std::invalid_argument&) {
      ++refused;
    }
    Case c{cell, s, false, false, true, RecurrentAlgorithm::kAuto};
    std::printf("%s %s refused (%d of 3 entries): %s\n", refused == 3 ? "ok  " : "FAIL",
                describe(c).c_str(), refused, what);
    if (refused != 3) ++driver::failures();
  }
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
  // Several rows per thread in the persistent kernel (40 and 50 rows: 32 and
  // 42 threads per column on the emulator's 4 SMs, GRU's 6 columns leaving 4
  // threads idle); kAuto takes it where a thread's work per step is small.
  const RecurrentShape tall{40, 2, 3, 7}, taller{50, 2, 3, 7};
  cases.push_back({Cell::kGruAfter, taller, false, false, true, persistent});
  cases.push_back({Cell::kLstm, odd, false, false, true, RecurrentAlgorithm::kAuto, persistent});
  // 640 rows of bias gradient in 2 row blocks, summed in a fixed order.
  cases.push_back({Cell::kSimpleRnn, {40, 16, 3, 7}, true, false, true, per_step});
  if (!small) {
    cases.push_back({Cell::kLstm, tall, true, true, true, persistent});
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
  // The persistent planner remembers its plans per device and shape.
  const int queries = cuda_emu::host_queries();
  run_case(cases.front());
  driver::expect_true("the first case again: no host queries", cuda_emu::host_queries() == queries,
                      std::to_string(cuda_emu::host_queries() - queries) + " queries");
  rejected_shape_case("no units", {2, 3, 4, 0});
  rejected_shape_case("no features", {2, 3, 0, 5});
  rejected_shape_case("no steps", {2, 0, 4, 5});
  return driver::result();
}
