// C++ tests of the general kernel call (run()): FP8 inputs with tensor, row
// and block scales, FP8 output with group scales, and several vectors, for
// every instruction set and several thread counts. Every element's scale index
// comes from the formula of kernel_call.h evaluated per element; FP8 values
// and rounding from tests/cpp/fp8_oracle.h.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "check.h"
#include "dtype_convert.h"
#include "fp8_oracle.h"
#include "merge_kernel.h"

using namespace chatvec;
using namespace fp8_oracle;

namespace {

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

template <typename T>
std::vector<void*> pointers(std::vector<std::vector<T>>& buffers) {
  std::vector<void*> p;
  for (auto& b : buffers) p.push_back(b.data());
  return p;
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
  std::vector<void*> out_ptrs = pointers(outs);
  c.outs = out_ptrs.data();
  const size_t per_row = kind == kBlockScale ? (cols + bc - 1) / bc : 1;
  const size_t groups = (n + unit - 1) / unit * per_row;
  std::vector<std::vector<float>> scales(num_k, std::vector<float>(groups + 1, -7.0f));
  std::vector<void*> scale_ptrs = pointers(scales);
  if (fp8_out) {
    c.out_scale.layout = ts[0].layout;
    c.out_scale.layout.kind = kind == kTensorScale ? kRowScale : kind;
    c.out_scale.layout.first_element = start;
    c.out_scale.scales = scale_ptrs.data();
  }
  run(c, threads);
  const ScaleLayout& ol = c.out_scale.layout;
  const size_t out_groups = groups, out_unit = unit;
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
  const size_t shapes[][4] = {{37, 45, 4, 8}, {130, 200, 128, 128}, {300, 500, 128, 128}, {2, 70000, 1, 512}};
  for (const std::string& isa : supported_isas()) {
    set_isa(isa);
    for (const auto& s : shapes)
      for (ScaleKind kind : {kTensorScale, kRowScale, kBlockScale})
        for (int vectors : {0, 1, 3, 16})
          for (bool fp8_out : {false, true}) {
            const int threads = 1 + static_cast<int>((s[0] + vectors) % 3);
            if (s[0] * s[1] > 10000 && vectors == 16) continue;  // keeps the oracle quick
            run_kernel_case(isa, threads, s[0], s[1], s[2], s[3], kind, vectors, fp8_out, false, rng);
            if (vectors == 0 && !fp8_out)
              run_kernel_case(isa, threads, s[0], s[1], s[2], s[3], kind, 0, false, true, rng);
          }
  }
  set_isa(supported_isas().front());
}

}  // namespace

void test_fp8_kernel_calls() { test_fp8_kernel(); }
