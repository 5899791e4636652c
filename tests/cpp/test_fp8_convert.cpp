// C++ tests of the FP8 conversions (csrc/dtype_convert.h): every code of
// e4m3fn and e5m2 decoded, and e4m3 rounding of every code value, midpoint and
// neighbour plus random doubles, against tests/cpp/fp8_oracle.h.
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "check.h"
#include "dtype_convert.h"
#include "fp8_oracle.h"

using namespace chatvec;
using namespace fp8_oracle;

namespace {

void test_fp8_decode_exhaustive() {
  for (int c = 0; c < 256; ++c) {
    const auto code = static_cast<uint8_t>(c);
    CHECK(same(e4m3_to_double(code), fp8_value(code, true)), "e4m3 %02x: %a vs %a", c, e4m3_to_double(code),
          fp8_value(code, true));
    CHECK(same(e5m2_to_double(code), fp8_value(code, false)), "e5m2 %02x: %a vs %a", c, e5m2_to_double(code),
          fp8_value(code, false));
  }
}

void check_e4m3(double x) {
  CHECK(double_to_e4m3(x) == oracle_e4m3(x), "e4m3(%a) = %02x, oracle %02x", x, double_to_e4m3(x), oracle_e4m3(x));
}

void test_e4m3_encode() {
  std::vector<double> xs = {0.0, INFINITY, NAN, 448.0, 464.0, 480.0, 1e300, 5e-324, 0x1p-10, 0x1p-9, 0x1.8p-9};
  for (int c = 0; c < 0x7e; ++c) {
    const double lo = fp8_value(static_cast<uint8_t>(c), true), hi = fp8_value(static_cast<uint8_t>(c + 1), true);
    const double mid = (lo + hi) / 2;
    xs.insert(xs.end(), {lo, hi, mid, std::nextafter(mid, 0.0), std::nextafter(mid, INFINITY)});
  }
  std::mt19937_64 rng(99);
  for (int i = 0; i < 1000000; ++i) {
    uint64_t u = rng();
    double x;
    std::memcpy(&x, &u, 8);
    xs.push_back(x);
    u = (u & 0x800fffffffffffffull) | ((1023 - 14 + rng() % 26) << 52);  // binades 2^-14 .. 2^11
    std::memcpy(&x, &u, 8);
    xs.push_back(x);
  }
  for (double x : xs) {
    check_e4m3(x);
    check_e4m3(-x);
  }
}

}  // namespace

void test_fp8_conversions() {
  test_fp8_decode_exhaustive();
  test_e4m3_encode();
}
