// Constants of the branch-free exp kernels written for the CPU passes that
// must vectorise (softmax cross-entropy, recurrent gate activations): each
// user adds its own polynomial evaluation and its own flush-to-limit bound.
#pragma once

#include <cstdint>

namespace fusednn::cpu {

template <typename T>
struct ExpTraits;

// Cody–Waite reduction x = n ln2 + r, |r| <= ln2/2, then exp(r) by its Taylor
// polynomial (truncation error below half an ulp: r^8/8! < 5e-9 in float,
// r^14/14! < 5e-18 in double) and 2^n built in the exponent bits.
template <>
struct ExpTraits<float> {
  using Bits = std::uint32_t;
  static constexpr int kMantissaBits = 23;
  static constexpr Bits kExponentBias = 127;
  static constexpr float kRoundMagic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  static constexpr float kLog2e = 1.44269504088896341f;
  static constexpr float kLn2Hi = 0.693145751953125f;
  static constexpr float kLn2Lo = 1.42860676533018708e-06f;
  static constexpr int kDegree = 7;
  static constexpr float kInverseFactorials[kDegree + 1] = {
      1.0f, 1.0f, 1.0f / 2, 1.0f / 6, 1.0f / 24, 1.0f / 120, 1.0f / 720, 1.0f / 5040};
};

template <>
struct ExpTraits<double> {
  using Bits = std::uint64_t;
  static constexpr int kMantissaBits = 52;
  static constexpr Bits kExponentBias = 1023;
  static constexpr double kRoundMagic = 6755399441055744.0;  // 1.5 * 2^52
  static constexpr double kLog2e = 1.4426950408889634074;
  static constexpr double kLn2Hi = 6.93147180369123816490e-01;
  static constexpr double kLn2Lo = 1.90821492927058770002e-10;
  static constexpr int kDegree = 13;
  static constexpr double kInverseFactorials[kDegree + 1] = {
      1.0,           1.0,            1.0 / 2,         1.0 / 6,          1.0 / 24,
      1.0 / 120,     1.0 / 720,      1.0 / 5040,      1.0 / 40320,      1.0 / 362880,
      1.0 / 3628800, 1.0 / 39916800, 1.0 / 479001600, 1.0 / 6227020800.0};
};

}  // namespace fusednn::cpu
