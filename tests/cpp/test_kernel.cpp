// C++ tests of the native kernel, run by CI through ctest (and under
// AddressSanitizer/UBSan with -DCHATVEC_SANITIZE=ON).
//
// The oracle below is written independently of csrc/dtype_convert.h: it
// widens with ldexp and rounds with a variable shift and an explicit sticky
// bit, so a shared mistake is unlikely.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "check.h"
#include "dtype_convert.h"
#include "merge_kernel.h"
#include "thread_pool.h"

using namespace chatvec;

int g_failures = 0;

// ---- oracle ------------------------------------------------------------------

static uint64_t bits_of(double x) {
  uint64_t b;
  std::memcpy(&b, &x, 8);
  return b;
}

static double oracle_widen(uint16_t h, int mant, int emin) {
  const int exp_bits = 15 - mant;
  const int e = (h >> mant) & ((1 << exp_bits) - 1);
  const int m = h & ((1 << mant) - 1);
  const double sign = (h & 0x8000) ? -1.0 : 1.0;
  if (e == (1 << exp_bits) - 1) return m ? std::numeric_limits<double>::quiet_NaN() : sign * INFINITY;
  if (e == 0) return sign * std::ldexp(static_cast<double>(m), emin - mant);
  return sign * std::ldexp(1.0 + std::ldexp(static_cast<double>(m), -mant), e + emin - 1);
}

static uint16_t oracle_round(double x, int mant, int emin, uint16_t inf, uint16_t qnan) {
  if (std::isnan(x)) return qnan;
  const uint16_t sign = std::signbit(x) ? 0x8000 : 0;
  const double a = std::fabs(x);
  if (a == 0) return sign;
  int e;
  std::frexp(a, &e);  // a = f * 2^e, f in [0.5, 1)
  const int exp = std::max(e - 1, emin);
  const int q_exp = exp - mant;  // target spacing 2^q_exp
  // a / 2^q_exp as integer part and a remainder classification.
  const double scaled = std::ldexp(a, -q_exp);  // exact (power-of-two scaling, no underflow here)
  const double whole = std::floor(scaled);
  const double frac = scaled - whole;  // exact
  double k = whole;
  if (frac > 0.5 || (frac == 0.5 && std::fmod(whole, 2.0) == 1.0)) k += 1;
  if (!std::isfinite(a)) return sign | inf;
  const double rounded = std::ldexp(k, q_exp);
  // Encode: find the target bits by search over the widened values.
  const int max_exp = -emin + 1;
  if (rounded >= std::ldexp(1.0, max_exp + 1)) return sign | inf;
  uint16_t bits;
  if (rounded < std::ldexp(1.0, emin)) {
    bits = static_cast<uint16_t>(k);  // subnormal (or the smallest normal when k = 2^mant)
  } else {
    int re;
    const double f = std::frexp(rounded, &re);  // rounded = f * 2^re
    const int m = static_cast<int>(std::ldexp(f, mant + 1)) - (1 << mant);
    bits = static_cast<uint16_t>(((re - 1 - emin + 1) << mant) | m);
  }
  return sign | bits;
}

static uint16_t oracle_bf16(double x) { return oracle_round(x, 7, -126, 0x7f80, 0x7fc0); }
static uint16_t oracle_f16(double x) { return oracle_round(x, 10, -14, 0x7c00, 0x7e00); }

// ---- tests -------------------------------------------------------------------

static void test_widening_exhaustive() {
  for (uint32_t h = 0; h < 65536; ++h) {
    const double bf = bf16_to_double(static_cast<uint16_t>(h));
    const double want_bf = oracle_widen(static_cast<uint16_t>(h), 7, -126);
    CHECK((std::isnan(bf) && std::isnan(want_bf)) || bits_of(bf) == bits_of(want_bf), "bf16 %04x", h);
    const double hf = f16_to_double(static_cast<uint16_t>(h));
    const double want_hf = oracle_widen(static_cast<uint16_t>(h), 10, -14);
    CHECK((std::isnan(hf) && std::isnan(want_hf)) || bits_of(hf) == bits_of(want_hf), "f16 %04x: %a vs %a", h, hf,
          want_hf);
  }
}

static void check_round(double x) {
  CHECK(double_to_bf16(x) == oracle_bf16(x), "bf16(%a) = %04x, oracle %04x", x, double_to_bf16(x), oracle_bf16(x));
  CHECK(double_to_f16(x) == oracle_f16(x), "f16(%a) = %04x, oracle %04x", x, double_to_f16(x), oracle_f16(x));
  const float f = static_cast<float>(x);
  uint32_t want;
  std::memcpy(&want, &f, 4);
  if (std::isnan(x)) want = 0x7fc00000u;
  CHECK(double_to_f32_bits(x) == want, "f32(%a)", x);
}

static void test_rounding() {
  const double specials[] = {0.0,      -0.0,         INFINITY,     -INFINITY,  NAN,           -NAN,       65504.0,
                             65519.99, 65520.0,      -65520.0,     0x1.fep127, 0x1.fefffp127, 0x1.ffp127, 0x1p128,
                             0x1p-126, 0x1.fffp-127, 0x1p-133,     0x1p-134,   0x1.0001p-134, 0x1.8p-133, 0x1p-14,
                             0x1p-24,  0x1p-25,      0x1.0001p-25, 0x1.8p-24,  0x1p-150,      1e308,      5e-324,
                             1.0,      0x1.01p0,     0x1.018p0,    0x1.028p0,  0x1.0028p0,    0x1.0018p0};
  for (double x : specials) {
    check_round(x);
    check_round(-x);
  }
  std::mt19937_64 rng(12345);
  for (int i = 0; i < 2000000; ++i) {
    uint64_t u = rng();
    double x;
    std::memcpy(&x, &u, 8);
    check_round(x);
    // exponents around the formats' ranges
    u = (u & 0x800fffffffffffffull) | ((1023 - 160 + rng() % 320) << 52);
    std::memcpy(&x, &u, 8);
    check_round(x);
    // exact midpoints and near-midpoints of bf16 and f16
    for (int shift : {44, 41}) {
      uint64_t v = (u & ~((1ull << shift) - 1)) | (1ull << shift);
      std::memcpy(&x, &v, 8);
      check_round(x);
      v += (rng() & 1) ? 1 : -1;
      std::memcpy(&x, &v, 8);
      check_round(x);
    }
  }
}

struct Case {
  DType base, chat, cp, out;
};

static void fill(std::vector<uint8_t>& buf, DType dt, size_t n, std::mt19937_64& rng, double scale, bool hostile) {
  buf.resize(n * itemsize(dt) + 1);
  std::normal_distribution<double> normal(0.0, scale);
  for (size_t i = 0; i < n; ++i) {
    double v = normal(rng);
    if (hostile && rng() % 97 == 0) {
      const double odd[] = {0.0, -0.0, INFINITY, -INFINITY, NAN, 0x1p-130, -0x1p-20, 0x1.fep127, 70000.0};
      v = odd[rng() % 9];
    }
    if (dt == kF64) {
      std::memcpy(&buf[i * 8], &v, 8);
    } else if (dt == kF32) {
      const float f = static_cast<float>(v);
      std::memcpy(&buf[i * 4], &f, 4);
    } else {
      const uint16_t h = dt == kBF16 ? oracle_bf16(v) : oracle_f16(v);
      std::memcpy(&buf[i * 2], &h, 2);
    }
  }
}

static double widen_any(const std::vector<uint8_t>& buf, DType dt, size_t i) {
  if (dt == kF64) {
    double d;
    std::memcpy(&d, &buf[i * 8], 8);
    return d;
  }
  if (dt == kF32) {
    float f;
    std::memcpy(&f, &buf[i * 4], 4);
    return f;
  }
  uint16_t h;
  std::memcpy(&h, &buf[i * 2], 2);
  return dt == kBF16 ? oracle_widen(h, 7, -126) : oracle_widen(h, 10, -14);
}

static uint64_t round_any(double x, DType dt) {
  if (dt == kBF16) return oracle_bf16(x);
  if (dt == kF16) return oracle_f16(x);
  if (dt == kF64) return std::isnan(x) ? 0x7ff8000000000000ull : bits_of(x);
  const float f = static_cast<float>(x);
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return std::isnan(x) ? 0x7fc00000u : b;
}

static uint64_t read_out(const std::vector<uint8_t>& buf, DType dt, size_t i) {
  uint64_t b = 0;
  std::memcpy(&b, &buf[i * itemsize(dt)], itemsize(dt));
  return b;
}

enum CaseMode { kMerge, kApply, kExtract, kConvert };
static const char* mode_name(CaseMode m) {
  return m == kMerge ? "merge" : m == kApply ? "apply" : m == kExtract ? "extract" : "convert";
}

static void run_case(CaseMode mode, DType bd, DType cd, DType pd, DType od, size_t n, int k, int threads,
                     std::mt19937_64& rng, const std::string& isa) {
  static const double alphas[] = {0.7, -1.0, 2.5};
  const bool hostile = (n % 2) == 1;
  std::vector<uint8_t> b, c, p;
  fill(b, bd, n, rng, 0.02, hostile);
  fill(c, cd, n, rng, 0.02, hostile);
  fill(p, pd, n, rng, 0.02, hostile);
  if (mode == kExtract) k = 1;
  std::vector<std::vector<uint8_t>> outs(k, std::vector<uint8_t>(n * itemsize(od) + 1, 0xAB));
  std::vector<void*> out_ptrs;
  for (auto& o : outs) out_ptrs.push_back(o.data());
  KernelCall a;  // the operands of the mode only, as the binding passes them; apply's one vector is chat
  a.mode = mode == kMerge ? kMergeMode : mode == kApply ? kApplyMode : mode == kExtract ? kExtractMode : kConvertMode;
  a.base.data = (mode == kMerge || mode == kExtract) ? b.data() : nullptr;
  a.base.dtype = bd;
  a.chat.data = mode == kConvert ? nullptr : c.data();
  a.chat.dtype = cd;
  a.cp.data = mode == kExtract ? nullptr : p.data();
  a.cp.dtype = pd;
  if (mode == kApply) {
    a.vectors = &a.chat;
    a.num_vectors = 1;
  }
  a.n = n;
  a.alphas = alphas;
  a.num_outputs = k;
  a.outs = out_ptrs.data();
  a.out_dtype = od;
  const size_t inexact = run(a, threads);
  size_t want_inexact = 0;
  for (int j = 0; j < k; ++j) {
    for (size_t i = 0; i < n; ++i) {
      double want_x;
      if (mode == kConvert) {
        want_x = widen_any(p, pd, i);
      } else {
        volatile double delta = widen_any(c, cd, i);
        if (mode != kApply) delta = delta - widen_any(b, bd, i);
        if (mode == kExtract) {
          want_x = delta;
        } else {
          const volatile double product = alphas[j] * delta;
          want_x = widen_any(p, pd, i) + product;
        }
      }
      const uint64_t want = round_any(want_x, od);
      const uint64_t got = read_out(outs[j], od, i);
      if (mode == kExtract && !std::isnan(want_x)) {  // did the output dtype hold want_x exactly?
        std::vector<uint8_t> tmp(8);
        std::memcpy(tmp.data(), &want, 8);
        want_inexact += bits_of(widen_any(tmp, od, 0)) != bits_of(want_x);
      }
      CHECK(got == want, "isa %s %s dtypes %d%d%d->%d n=%zu k=%d i=%zu: got %llx want %llx", isa.c_str(),
            mode_name(mode), bd, cd, pd, od, n, j, i, (unsigned long long)got, (unsigned long long)want);
    }
    CHECK(outs[j][n * itemsize(od)] == 0xAB, "wrote past the end: n=%zu", n);
  }
  if (mode == kExtract) CHECK(inexact == want_inexact, "inexact count %zu, want %zu", inexact, want_inexact);
}

static void test_kernel_grid() {
  const DType dts[] = {kBF16, kF16, kF32, kF64};
  const size_t lengths[] = {0, 1, 7, 63, 64, 65, 1023, 1024, 1025, 4097, 200003};
  std::mt19937_64 rng(7);
  for (const std::string& isa : supported_isas()) {
    set_isa(isa);
    for (size_t n : lengths) {
      const int threads = 1 + static_cast<int>(n % 3);
      const bool long_case = n > 5000;
      for (DType od : dts) {
        for (DType bd : dts)
          for (DType cd : dts)
            for (DType pd : dts) {
              // Full grid for short lengths; uniform inputs for long ones keeps the test quick.
              if (long_case && !(bd == cd && cd == pd)) continue;
              for (int k : {1, 3}) run_case(kMerge, bd, cd, pd, od, n, k, threads, rng, isa);
            }
        for (DType in : dts) {
          run_case(kApply, in, in, kBF16, od, n, 2, threads, rng, isa);
          run_case(kApply, in, kF32, in, od, n, 1, threads, rng, isa);
          run_case(kExtract, in, in, in, od, n, 1, threads, rng, isa);
          run_case(kExtract, kBF16, in, in, od, n, 1, threads, rng, isa);
          run_case(kConvert, in, in, in, od, n, 2, threads, rng, isa);
        }
      }
    }
  }
  set_isa(supported_isas().front());
}

static void test_thread_pool() {
  for (int threads : {1, 2, 5}) {
    std::vector<int> hits(1000, 0);
    ThreadPool::instance().parallel_for(hits.size(), threads, [&](size_t t) { hits[t] += 1; });
    bool all_once = true;
    for (int h : hits) all_once = all_once && h == 1;
    CHECK(all_once, "parallel_for with %d threads did not run every task exactly once", threads);
  }
}

int main() {
  std::printf("instruction sets: ");
  for (const auto& isa : supported_isas()) std::printf("%s ", isa.c_str());
  std::printf("\n");
  test_widening_exhaustive();
  test_rounding();
  test_thread_pool();
  test_kernel_grid();
  test_fp8_conversions();
  test_fp8_kernel_calls();
  if (g_failures) {
    std::printf("%d failures\n", g_failures);
    return 1;
  }
  std::printf("all kernel tests passed\n");
  return 0;
}
