// C++ tests of the FP8 conversions and the general kernel call (run()): FP8
// inputs with tensor, row and block scales, FP8 output with group scales, and
// several vectors, for every instruction set and several thread counts.
//
// The oracles are written apart from csrc/: FP8 codes decode with ldexp from
// their fields, e4m3 rounding searches the sorted code values (exact
// midpoints, ties to the even code), and every element's scale index comes
// from the formula of kernel_call.h evaluated per element.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "check.h"
#include "dtype_convert.h"
#include "merge_kernel.h"

using namespace chatvec;

namespace {

uint64_t bits(double x) {
  uint64_t b;
  std::memcpy(&b, &x, 8);
  return b;
}

bool same(double a, double b) { return (std::isnan(a) && std::isnan(b)) || bits(a) == bits(b); }

double fp8_value(uint8_t code, bool e4m3) {
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
uint8_t oracle_e4m3(double x) {
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

// ---- the kernel ----------------------------------------------------------------

struct Tensor {  // one operand: codes or values of the whole tensor, and its scales
  DType dtype;
  ScaleLayout layout;  // first_element and first_scale_row 0: the whole tensor
  std::vector<uint8_t> data;
  std::vector<float> scales;
};

size_t scale_index(const ScaleLayout& l, size_t e, size_t first_scale_row) {
  const size_t row = e / l.cols, col = e % l.cols;
  if (l.kind == kRowScale) return row - first_scale_row;
  if (l.kind == kBlockScale)
    return (row / l.block_rows - first_scale_row) * ((l.cols + l.block_cols - 1) / l.block_cols) + col / l.block_cols;
  return 0;
}

Tensor make_tensor(DType dtype, ScaleKind kind, size_t rows, size_t cols, size_t br, size_t bc, std::mt19937_64& rng) {
  Tensor t{dtype, {}, std::vector<uint8_t>(rows * cols * itemsize(dtype)), {}};
  t.layout.kind = is_fp8(dtype) ? kind : kNoScale;
  t.layout.cols = cols;
  t.layout.block_rows = br;
  t.layout.block_cols = bc;
  std::normal_distribution<double> normal(0.0, 0.02);
  for (size_t i = 0; i < rows * cols; ++i) {
    if (is_fp8(dtype)) {
      t.data[i] = static_cast<uint8_t>(rng());  // every code, NaN and Inf included
    } else if (dtype == kF64) {
      const double v = normal(rng);
      std::memcpy(&t.data[i * 8], &v, 8);
    } else {  // F32
      const float v = static_cast<float>(normal(rng));
      std::memcpy(&t.data[i * 4], &v, 4);
    }
  }
  if (t.layout.kind != kNoScale) {
    const size_t count = scale_index(t.layout, rows * cols - 1, 0) + 1;
    for (size_t i = 0; i < count; ++i) t.scales.push_back(std::ldexp(1.0f + (rng() % 1000) / 1000.0f, -12));
  }
  return t;
}

double value_at(const Tensor& t, size_t e) {
  double v;
  if (t.dtype == kF64) {
    std::memcpy(&v, &t.data[e * 8], 8);
  } else if (t.dtype == kF32) {
    float f;
    std::memcpy(&f, &t.data[e * 4], 4);
    v = f;
  } else {
    v = fp8_value(t.data[e], t.dtype == kF8E4M3);
  }
  return t.layout.kind == kNoScale ? v : v * static_cast<double>(t.scales[scale_index(t.layout, e, 0)]);
}

// The chunk [start, start + n) of a tensor, its scales from the chunk's first (block-)row on.
Input chunk_of(const Tensor& t, size_t start) {
  Input in;
  in.dtype = t.dtype;
  in.data = t.data.data() + start * itemsize(t.dtype);
  in.scale = t.layout;
  in.scale.first_element = start;
  in.scales = t.scales.data();
  if (t.layout.kind == kRowScale) {
    in.scale.first_scale_row = start / t.layout.cols;
    in.scales = t.scales.data() + in.scale.first_scale_row;
  } else if (t.layout.kind == kBlockScale) {
    in.scale.first_scale_row = start / t.layout.cols / t.layout.block_rows;
    in.scales = t.scales.data() + in.scale.first_scale_row * t.layout.blocks_per_row();
  }
  return in;
}

// same_layout: base, chat and cp all e4m3 in one scale layout, K = 1 (the
// fused scaled path), cp's scales passed whole (first_scale_row 0).
void run_kernel_case(const std::string& isa, int threads, size_t rows, size_t cols, size_t br, size_t bc,
                     ScaleKind kind, int num_vectors, bool fp8_out, bool same_layout, std::mt19937_64& rng) {
  const size_t n_all = rows * cols;
  const ScaleKind other = kind == kBlockScale ? kRowScale : kBlockScale;
  std::vector<Tensor> ts;
  ts.push_back(make_tensor(kF8E4M3, kind, rows, cols, br, bc, rng));  // base, or cp for apply
  ts.push_back(same_layout ? make_tensor(kF8E4M3, kind, rows, cols, br, bc, rng)
                           : make_tensor(kF8E5M2, other, rows, cols, 4, 8, rng));                  // chat
  ts.push_back(make_tensor(kF8E4M3, same_layout ? kind : kTensorScale, rows, cols, br, bc, rng));  // cp
  const DType vector_dtypes[] = {kF8E4M3, kF32, kF64, kF8E5M2};
  for (int m = 0; m < num_vectors; ++m) ts.push_back(make_tensor(vector_dtypes[m % 4], kind, rows, cols, br, bc, rng));
  // FP8 output: start at the second row of groups; otherwise anywhere.
  const size_t unit = kind == kBlockScale ? br * cols : cols;
  const size_t start = fp8_out ? (unit < n_all ? unit : 0) : 3 * cols / 2 + 1;
  const size_t n = n_all - start;
  const int num_k = same_layout ? 1 : 3;
  std::vector<double> alphas;
  for (int k = 0; k < num_k; ++k)
    for (int m = 0; m < std::max(1, num_vectors); ++m) alphas.push_back(0.5 * (k + 1) * (m % 2 ? -1 : 1) + m);
  KernelCall c;
  c.n = n;
  std::vector<Input> vectors;
  if (num_vectors == 0) {
    c.mode = kMergeMode;
    c.base = chunk_of(ts[0], start);
    c.chat = chunk_of(ts[1], start);
    c.cp = chunk_of(ts[2], start);
    if (same_layout) {
      c.cp.scale.first_scale_row = 0;
      c.cp.scales = ts[2].scales.data();
    }
  } else {
    c.mode = kApplyMode;
    c.cp = chunk_of(ts[0], start);
    for (int m = 0; m < num_vectors; ++m) vectors.push_back(chunk_of(ts[3 + m], start));
    c.vectors = vectors.data();
    c.num_vectors = num_vectors;
  }
  c.alphas = alphas.data();
  c.num_outputs = num_k;
  c.out_dtype = fp8_out ? kF8E4M3 : kF64;
  std::vector<std::vector<uint8_t>> outs(num_k, std::vector<uint8_t>(n * itemsize(c.out_dtype) + 1, 0xAB));
  std::vector<void*> out_ptrs;
  for (auto& o : outs) out_ptrs.push_back(o.data());
  c.outs = out_ptrs.data();
  const size_t per_row = kind == kBlockScale ? (cols + bc - 1) / bc : 1;
  const size_t groups = (n + unit - 1) / unit * per_row;
  std::vector<std::vector<float>> scales(num_k, std::vector<float>(groups + 1, -7.0f));
  std::vector<void*> scale_ptrs;
  for (auto& s : scales) scale_ptrs.push_back(s.data());
  if (fp8_out) {
    c.out_scale.layout = ts[0].layout;
    c.out_scale.layout.kind = kind == kTensorScale ? kRowScale : kind;
    c.out_scale.layout.first_element = start;
    c.out_scale.scales = scale_ptrs.data();
  }
  run(c, threads);
  const ScaleLayout& ol = c.out_scale.layout;
  const size_t out_unit = ol.kind == kBlockScale ? br * cols : cols;
  const size_t out_groups = (n + out_unit - 1) / out_unit * (ol.kind == kBlockScale ? per_row : 1);
  for (int k = 0; k < num_k; ++k) {
    std::vector<double> x(n);
    for (size_t i = 0; i < n; ++i) {
      const size_t e = start + i;
      if (num_vectors == 0) {
        const double d = value_at(ts[1], e) - value_at(ts[0], e);
        const double product = alphas[k] * d;
        x[i] = value_at(ts[2], e) + product;
      } else {
        double acc = value_at(ts[0], e);
        for (int m = 0; m < num_vectors; ++m) {
          const double product = alphas[k * num_vectors + m] * value_at(ts[3 + m], e);
          acc = acc + product;
        }
        x[i] = acc;
      }
    }
    if (!fp8_out) {
      for (size_t i = 0; i < n; ++i) {
        double got;
        std::memcpy(&got, &outs[k][i * 8], 8);
        CHECK(same(got, x[i]), "%s t%d %zux%zu kind %d M=%d k=%d i=%zu: %a vs %a", isa.c_str(), threads, rows, cols,
              kind, num_vectors, k, i, got, x[i]);
      }
      continue;
    }
    std::vector<double> amax(out_groups, 0.0);
    const size_t first_group_row = start / out_unit;
    auto group = [&](size_t e) { return scale_index(ol, e, first_group_row); };
    for (size_t i = 0; i < n; ++i)
      if (std::isfinite(x[i])) amax[group(start + i)] = std::max(amax[group(start + i)], std::fabs(x[i]));
    for (size_t g = 0; g < out_groups; ++g) {
      float s = static_cast<float>(amax[g] / 448.0);
      if (amax[g] == 0 || s == 0) s = 1.0f;
      CHECK(bits(scales[k][g]) == bits(s), "%s group %zu scale %a vs %a", isa.c_str(), g, scales[k][g], s);
    }
    CHECK(scales[k][out_groups] == -7.0f, "wrote past the group scales");
    for (size_t i = 0; i < n; ++i) {
      const uint8_t want = oracle_e4m3(x[i] / static_cast<double>(scales[k][group(start + i)]));
      CHECK(outs[k][i] == want, "%s t%d %zux%zu kind %d M=%d k=%d i=%zu: x %a code %02x vs %02x", isa.c_str(), threads,
            rows, cols, kind, num_vectors, k, i, x[i], outs[k][i], want);
    }
    CHECK(outs[k][n] == 0xAB, "wrote past the output");
  }
}

void test_fp8_kernel() {
  std::mt19937_64 rng(5);
  struct Shape {
    size_t rows, cols, br, bc;
  };
  const Shape shapes[] = {{37, 45, 4, 8}, {130, 200, 128, 128}, {300, 500, 128, 128}, {2, 70000, 1, 512}};
  for (const std::string& isa : supported_isas()) {
    set_isa(isa);
    for (const Shape& s : shapes)
      for (ScaleKind kind : {kTensorScale, kRowScale, kBlockScale})
        for (int vectors : {0, 1, 3, 16})
          for (bool fp8_out : {false, true}) {
            const int threads = 1 + static_cast<int>((s.rows + vectors) % 3);
            if (s.rows * s.cols > 10000 && vectors == 16) continue;  // keeps the oracle quick
            run_kernel_case(isa, threads, s.rows, s.cols, s.br, s.bc, kind, vectors, fp8_out, false, rng);
            if (vectors == 0 && !fp8_out)
              run_kernel_case(isa, threads, s.rows, s.cols, s.br, s.bc, kind, 0, false, true, rng);
          }
  }
  set_isa(supported_isas().front());
}

}  // namespace

void test_fp8() {
  test_fp8_decode_exhaustive();
  test_e4m3_encode();
  test_fp8_kernel();
}
