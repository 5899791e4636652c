// FP8 oracles for the C++ tests, written apart from csrc/: codes decode with
// ldexp from their fields; e4m3 rounding is a binary search of the sorted code
// values (exact midpoints, ties to the even code), saturating.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

namespace fp8_oracle {

inline uint64_t bits(double x) {
  uint64_t b;
  std::memcpy(&b, &x, 8);
  return b;
}

inline bool same(double a, double b) { return (std::isnan(a) && std::isnan(b)) || bits(a) == bits(b); }

inline double fp8_value(uint8_t code, bool e4m3) {
  const int mant = e4m3 ? 3 : 2, exp_bits = e4m3 ? 4 : 5, bias = e4m3 ? 7 : 15;
  const int e = (code >> mant) & ((1 << exp_bits) - 1), m = code & ((1 << mant) - 1);
  const double sign = (code & 0x80) ? -1.0 : 1.0;
  if (!e4m3 && e == 31) return m ? std::numeric_limits<double>::quiet_NaN() : sign * INFINITY;
  if (e4m3 && e == 15 && m == 7) return std::numeric_limits<double>::quiet_NaN();
  if (e == 0) return sign * std::ldexp(m, 1 - bias - mant);
  return sign * std::ldexp((1 << mant) + m, e - bias - mant);
}

// Nearest finite e4m3 value by binary search over the sorted values of codes
// 0..0x7e; ties to the even code; saturating.
inline uint8_t oracle_e4m3(double x) {
  static const std::vector<double> values = [] {
    std::vector<double> v;
    for (int c = 0; c <= 0x7e; ++c) v.push_back(fp8_value(static_cast<uint8_t>(c), true));
    return v;
  }();
  if (std::isnan(x)) return 0x7f;
  const uint8_t sign = std::signbit(x) ? 0x80 : 0;
  const double a = std::fabs(x);
  if (a >= 448.0) return sign | 0x7e;
  const int hi = static_cast<int>(std::upper_bound(values.begin(), values.end(), a) - values.begin());  // >= 1
  const int lo = hi - 1;
  if (values[lo] == a) return static_cast<uint8_t>(sign | lo);
  const double mid = (values[lo] + values[hi]) / 2;  // exact
  const int pick = a > mid ? hi : a < mid ? lo : (lo % 2 == 0 ? lo : hi);
  return static_cast<uint8_t>(sign | pick);
}

}  // namespace fp8_oracle
