// optimizers.cu in the emulator against the CPU kernels in float64: Adam, the
// three SGD variants, Nadam, Adamax and Lion over tensors of 1, 7 and 16385
// elements (a chunk and one element more: a last chunk of one element), an
// empty tensor (skipped), and more tensors than one parameter table holds (two
// launches).
#include <cstdint>
#include <string>
#include <vector>

#include "check.h"
#include "fusednn/optimizers.h"

namespace {

using driver::expect_close;

// One update is a handful of float32 operations per element (the Adam step
// about 8, with a sqrt and a division): a few ulps, under 1e-6 relative; the
// parameters and moments here are O(1), so rtol 1e-5 with atol 1e-6 (for
// values that cancel to near zero) bounds it with room.
constexpr double kRtol = 1e-5, kAtol = 1e-6;

struct Tensors {
  std::vector<std::int64_t> sizes;
  std::vector<std::vector<float>> p, g, m, v;
  explicit Tensors(std::vector<std::int64_t> s) : sizes(std::move(s)) {
    for (std::int64_t n : sizes) {
      p.push_back(driver::uniform<float>(n, -1, 1));
      g.push_back(driver::uniform<float>(n, -1, 1));
      m.push_back(driver::uniform<float>(n, -0.5, 0.5));
      v.push_back(driver::uniform<float>(n, 0, 1));
    }
  }
};

template <typename T>
std::vector<T*> pointers(std::vector<std::vector<T>>& arrays) {
  std::vector<T*> out;
  for (auto& a : arrays) out.push_back(a.data());
  return out;
}

std::vector<std::vector<double>> widen(const std::vector<std::vector<float>>& arrays) {
  std::vector<std::vector<double>> out;
  for (const auto& a : arrays) out.push_back(driver::widen(a));
  return out;
}

void compare(const std::string& name, const std::vector<std::vector<float>>& got,
             const std::vector<std::vector<double>>& want) {
  for (std::size_t i = 0; i < got.size(); ++i) {
    expect_close(name + "[" + std::to_string(i) + "]", got[i], want[i], kRtol, kAtol);
  }
}

void adam_case(const std::vector<std::int64_t>& sizes) {
  Tensors t(sizes);
  auto p64 = widen(t.p), g64 = widen(t.g), m64 = widen(t.m), v64 = widen(t.v);
  const auto h = fusednn::adam_hyperparameters(0.01, 0.9, 0.999, 1e-7, 3, 0.01);
  auto pp = pointers(t.p), pm = pointers(t.m), pv = pointers(t.v);
  auto pg = pointers(t.g);
  std::vector<const float*> cg(pg.begin(), pg.end());
  fusednn::cuda::adam_update(pp.data(), cg.data(), pm.data(), pv.data(), t.sizes.data(),
                             static_cast<std::int64_t>(t.sizes.size()), h, 0);
  auto qp = pointers(p64), qm = pointers(m64), qv = pointers(v64), qg = pointers(g64);
  std::vector<const double*> cg64(qg.begin(), qg.end());
  fusednn::cpu::adam_update<double>(qp.data(), cg64.data(), qm.data(), qv.data(),
                                    t.sizes.data(), static_cast<std::int64_t>(t.sizes.size()), h);
  const std::string name = "adam " + std::to_string(sizes.size()) + " tensors";
  compare(name + " p", t.p, p64);
  compare(name + " m", t.m, m64);
  compare(name + " v", t.v, v64);
}

void sgd_case(const std::vector<std::int64_t>& sizes, double momentum, bool nesterov) {
  Tensors t(sizes);
  auto p64 = widen(t.p), g64 = widen(t.g), m64 = widen(t.m);
  const fusednn::SgdHyperparameters h{0.1, momentum, 0.001, nesterov};
  auto pp = pointers(t.p), pm = pointers(t.m), pg = pointers(t.g);
  std::vector<const float*> cg(pg.begin(), pg.end());
  fusednn::cuda::sgd_update(pp.data(), cg.data(), momentum > 0 ? pm.data() : nullptr,
                            t.sizes.data(), static_cast<std::int64_t>(t.sizes.size()), h, 0);
  auto qp = pointers(p64), qm = pointers(m64), qg = pointers(g64);
  std::vector<const double*> cg64(qg.begin(), qg.end());
  fusednn::cpu::sgd_update<double>(qp.data(), cg64.data(), momentum > 0 ? qm.data() : nullptr,
                                   t.sizes.data(), static_cast<std::int64_t>(t.sizes.size()), h);
  const std::string name = std::string("sgd momentum=") + (momentum > 0 ? "0.9" : "0") +
                           (nesterov ? " nesterov" : "");
  compare(name + " p", t.p, p64);
  if (momentum > 0) compare(name + " m", t.m, m64);
}

// Nadam, Adamax (4 arrays: p, g and two states) and Lion (3 arrays) share one
// generic kernel; `gpu` and `cpu` run one of them on float and double lists.
template <typename Gpu, typename Cpu>
void element_case(const std::string& name, const std::vector<std::int64_t>& sizes, bool two_states,
                  const Gpu& gpu, const Cpu& cpu) {
  Tensors t(sizes);
  auto p64 = widen(t.p), g64 = widen(t.g), m64 = widen(t.m), v64 = widen(t.v);
  auto pp = pointers(t.p), pm = pointers(t.m), pv = pointers(t.v), pg = pointers(t.g);
  std::vector<const float*> cg(pg.begin(), pg.end());
  gpu(pp.data(), cg.data(), pm.data(), pv.data(), t.sizes.data(),
      static_cast<std::int64_t>(t.sizes.size()));
  auto qp = pointers(p64), qm = pointers(m64), qv = pointers(v64), qg = pointers(g64);
  std::vector<const double*> cg64(qg.begin(), qg.end());
  cpu(qp.data(), cg64.data(), qm.data(), qv.data(), t.sizes.data(),
      static_cast<std::int64_t>(t.sizes.size()));
  const std::string label = name + " " + std::to_string(sizes.size()) + " tensors";
  compare(label + " p", t.p, p64);
  compare(label + " m", t.m, m64);
  if (two_states) compare(label + " v", t.v, v64);
}

void nadam_case(const std::vector<std::int64_t>& sizes) {
  double u_product;
  const auto c = fusednn::nadam_coefficients(0.01, 0.9, 0.999, 1e-7, 3, 0.5, 0.01, &u_product);
  element_case(
      "nadam", sizes, true,
      [&](float* const* p, const float* const* g, float* const* m, float* const* v,
          const std::int64_t* n, std::int64_t count) {
        fusednn::cuda::nadam_update(p, g, m, v, n, count, c, 0);
      },
      [&](double* const* p, const double* const* g, double* const* m, double* const* v,
          const std::int64_t* n, std::int64_t count) {
        fusednn::cpu::nadam_update<double>(p, g, m, v, n, count, c);
      });
}

void adamax_case(const std::vector<std::int64_t>& sizes) {
  const auto c = fusednn::adamax_coefficients(0.01, 0.9, 0.999, 1e-7, 3, 0.01);
  element_case(
      "adamax", sizes, true,
      [&](float* const* p, const float* const* g, float* const* m, float* const* u,
          const std::int64_t* n, std::int64_t count) {
        fusednn::cuda::adamax_update(p, g, m, u, n, count, c, 0);
      },
      [&](double* const* p, const double* const* g, double* const* m, double* const* u,
          const std::int64_t* n, std::int64_t count) {
        fusednn::cpu::adamax_update<double>(p, g, m, u, n, count, c);
      });
}

// Lion's step is lr * sign(...): compared as the others, since a sign that
// differed between float and double (an argument within rounding of 0) would
// show as a 2 lr = 0.02 error, far over the tolerance; with uniform draws such
// an argument is improbable, and the driver's generator has a fixed seed.
void lion_case(const std::vector<std::int64_t>& sizes) {
  const auto c = fusednn::lion_coefficients(0.01, 0.9, 0.99, 0.01);
  element_case(
      "lion", sizes, false,
      [&](float* const* p, const float* const* g, float* const* m, float* const*,
          const std::int64_t* n, std::int64_t count) {
        fusednn::cuda::lion_update(p, g, m, n, count, c, 0);
      },
      [&](double* const* p, const double* const* g, double* const* m, double* const*,
          const std::int64_t* n, std::int64_t count) {
        fusednn::cpu::lion_update<double>(p, g, m, n, count, c);
      });
}

}  // namespace

int main(int argc, char** argv) {
  const bool small = argc > 1 && std::string(argv[1]) == "--small";
  const std::vector<std::int64_t> sizes = {1, 16385, 0, 7};
  std::vector<std::int64_t> many(fusednn::cuda::kMaxTensorsPerLaunch + 3, 3);
  many[5] = 0;
  adam_case(small ? std::vector<std::int64_t>{1, 0, 7} : sizes);
  adam_case(many);
  sgd_case(sizes, 0.0, false);
  sgd_case(small ? std::vector<std::int64_t>{5} : sizes, 0.9, false);
  sgd_case(small ? std::vector<std::int64_t>{5} : sizes, 0.9, true);
  const std::vector<std::int64_t> element_sizes =
      small ? std::vector<std::int64_t>{1, 0, 7} : sizes;
  nadam_case(element_sizes);
  adamax_case(element_sizes);
  lion_case(element_sizes);
  if (!small) {
    nadam_case(many);
    lion_case(many);
  }
  return driver::result();
}
