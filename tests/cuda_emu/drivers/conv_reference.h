// The float64 CPU convolution as the reference of the conv drivers, with an
// error bound per output element: a float32 sum of K products, accumulated in
// any order (per thread, across k tiles, through split-K atomics), is within
// (K + 2) u * sum |products| of the exact value (u = 2^-24: K additions, the
// bias and the final rounding). TF32 inputs first round each factor to 10
// mantissa bits (relative 2^-11 each), adding 2^-10 * sum |products|.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "check.h"
#include "fusednn/conv.h"

namespace driver {

inline std::vector<double> absolute(const std::vector<float>& v) {
  std::vector<double> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = std::fabs(static_cast<double>(v[i]));
  return out;
}

inline std::vector<double> bound(const std::vector<double>& magnitude, std::int64_t K, bool tf32) {
  const double u = std::ldexp(1.0, -24);
  const double relative = (K + 2) * u + (tf32 ? std::ldexp(1.0, -10) : 0.0);
  std::vector<double> out(magnitude.size());
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = relative * magnitude[i];
  return out;
}

// Keras-style output size for the given padding before and after.
inline fusednn::Conv2dShape conv_shape(std::int64_t N, std::int64_t H, std::int64_t W,
                                       std::int64_t C, std::int64_t F, std::int64_t KH,
                                       std::int64_t KW, std::int64_t sh, std::int64_t sw,
                                       std::int64_t dh, std::int64_t dw, std::int64_t pad_h,
                                       std::int64_t pad_w) {
  const std::int64_t OH = (H + 2 * pad_h - dh * (KH - 1) - 1) / sh + 1;
  const std::int64_t OW = (W + 2 * pad_w - dw * (KW - 1) - 1) / sw + 1;
  return {N, H, W, C, OH, OW, F, KH, KW, sh, sw, dh, dw, pad_h, pad_w};
}

}  // namespace driver
