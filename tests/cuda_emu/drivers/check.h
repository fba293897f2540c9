// What every driver shares: random inputs, outputs poisoned before a kernel
// runs (all bytes 0xFF, NaN for floats), and comparison against a reference
// with a tolerance the caller justifies. A driver prints one line per case and
// exits non-zero when any case differs.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace driver {

inline std::mt19937_64& rng() {
  static std::mt19937_64 generator(20261206);
  return generator;
}

template <typename T>
std::vector<T> uniform(std::size_t n, double low, double high) {
  std::uniform_real_distribution<double> d(low, high);
  std::vector<T> v(n);
  for (T& x : v) x = static_cast<T>(d(rng()));
  return v;
}

// float32 values in float64, for the references.
inline std::vector<double> widen(const std::vector<float>& v) { return {v.begin(), v.end()}; }

template <typename T>
std::vector<T> poisoned(std::size_t n) {
  std::vector<T> v(n);
  if (n > 0) std::memset(v.data(), 0xff, n * sizeof(T));
  return v;
}

inline int& failures() {
  static int count = 0;
  return count;
}

// |got - want| <= atol + rtol * |want| everywhere, NaN only where want is NaN.
template <typename T, typename U>
void expect_close(const std::string& name, const std::vector<T>& got, const std::vector<U>& want,
                  double rtol, double atol) {
  double worst = 0.0;
  std::size_t bad = got.size() == want.size() ? want.size() : 0;
  if (got.size() != want.size()) bad = 0;
  for (std::size_t i = 0; i < want.size() && i < got.size(); ++i) {
    const double g = static_cast<double>(got[i]), w = static_cast<double>(want[i]);
    if (std::isnan(w) || std::isnan(g)) {
      if (std::isnan(w) != std::isnan(g) && bad == want.size()) bad = i;
      continue;
    }
    if (std::isinf(w) || std::isinf(g)) {
      if (g != w && bad == want.size()) bad = i;
      continue;
    }
    const double excess = std::fabs(g - w) - (atol + rtol * std::fabs(w));
    if (excess > 0 && bad == want.size()) bad = i;
    worst = std::max(worst, std::fabs(g - w) / (atol + rtol * std::fabs(w)));
  }
  const bool ok = got.size() == want.size() && bad == want.size();
  std::printf("%s %s (%zu values, worst error %.3g of the tolerance)\n", ok ? "ok  " : "FAIL",
              name.c_str(), want.size(), worst);
  if (!ok) {
    ++failures();
    if (got.size() != want.size()) {
      std::printf("     sizes differ: %zu vs %zu\n", got.size(), want.size());
    } else {
      std::printf("     first mismatch at %zu: got %.9g, want %.9g\n", bad,
                  static_cast<double>(got[bad]), static_cast<double>(want[bad]));
    }
  }
}

template <typename T>
void expect_equal(const std::string& name, const std::vector<T>& got, const std::vector<T>& want) {
  expect_close(name, got, want, 0.0, 0.0);
}

// A condition the caller explains in `name`; `detail` is printed when it fails.
inline void expect_true(const std::string& name, bool ok, const std::string& detail = "") {
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", name.c_str());
  if (!ok) {
    ++failures();
    if (!detail.empty()) std::printf("     %s\n", detail.c_str());
  }
}

inline int result() {
  std::printf("%s\n", failures() == 0 ? "all cases passed" : "some cases FAILED");
  return failures() == 0 ? 0 : 1;
}

}  // namespace driver

namespace driver {

// |got - want| <= bound elementwise (bounds from an error analysis of the sum
// that produced each element); NaN nowhere.
template <typename T>
void expect_within(const std::string& name, const std::vector<T>& got,
                   const std::vector<double>& want, const std::vector<double>& bound) {
  std::size_t bad = want.size();
  double worst = 0.0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    const double error = std::fabs(static_cast<double>(got[i]) - want[i]);
    if (!(error <= bound[i]) && bad == want.size()) bad = i;
    if (bound[i] > 0) worst = std::max(worst, error / bound[i]);
  }
  const bool ok = got.size() == want.size() && bad == want.size();
  std::printf("%s %s (%zu values, worst error %.3g of the bound)\n", ok ? "ok  " : "FAIL",
              name.c_str(), want.size(), worst);
  if (!ok) {
    ++failures();
    if (bad < want.size()) {
      std::printf("     first mismatch at %zu: got %.9g, want %.9g +- %.3g\n", bad,
                  static_cast<double>(got[bad]), want[bad], bound[bad]);
    }
  }
}

}  // namespace driver
