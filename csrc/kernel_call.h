// One general kernel call (chatvec_fast/backends/call.py describes the same
// thing in Python): FP8 operands with scales, FP8 output re-quantized per
// group, and several saved vectors at once.
//
//   merge    base, chat, cp      out_k = cp + alpha_k * (chat - base)
//   apply    cp, vectors v_0..   acc = cp; acc = acc + alpha_k,m * v_m for m = 0..M-1; out_k = acc
//   extract  base, chat          out   = chat - base     (counts inexact elements)
//   convert  cp                  out_k = cp
//
// Every operand element widens exactly to float64: decode(code) * (double)scale.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "dtype_convert.h"

namespace chatvec {

// Codes shared with Python: chatvec_fast/kernel_codes.py (MODE_CODES, SCALE_KIND_CODES, NO_SCALE,
// MAX_VECTORS; tests/test_kernel_codes.py compares them). kNoScale: scale 1.
enum Mode : int { kMergeMode = 0, kApplyMode = 1, kExtractMode = 2, kConvertMode = 3 };

enum ScaleKind : int { kTensorScale = 0, kRowScale = 1, kBlockScale = 2, kNoScale = -1 };

// Up to this many vectors in one apply call (the staged path keeps one
// accumulator per output; more vectors only cost more passes).
constexpr int kMaxVectors = 16;

// Where the scale of each element of a chunk lives (float32 values). The
// chunk's element i is element first_element + i of a tensor with `cols`
// columns (row = e / cols, col = e % cols). tensor: values[0]; row:
// values[row - first_scale_row]; block: values[(row / block_rows -
// first_scale_row) * ceil(cols / block_cols) + col / block_cols].
struct ScaleLayout {
  ScaleKind kind = kNoScale;
  size_t cols = 1;
  size_t first_element = 0;
  size_t block_rows = 1;
  size_t block_cols = 1;
  size_t first_scale_row = 0;

  size_t blocks_per_row() const { return kind == kBlockScale ? (cols + block_cols - 1) / block_cols : 1; }
};

struct Input {
  const void* data = nullptr;
  DType dtype = kBF16;
  ScaleLayout scale;             // kNoScale: value = decode(code)
  const void* scales = nullptr;  // float32 values (read with memcpy: any alignment)
};

// FP8 output: each group (a row, or block_rows x block_cols clipped to the
// tensor) of each output gets its own scale, written to scales[k] in the
// input layout with first_scale_row = first_element / (rows per group).
struct OutScale {
  ScaleLayout layout;             // kind kRowScale or kBlockScale; kNoScale: no FP8 output
  void* const* scales = nullptr;  // K float32 buffers
};

struct KernelCall {
  Mode mode = kMergeMode;
  size_t n = 0;
  Input base, chat, cp;
  const Input* vectors = nullptr;  // apply: num_vectors >= 1
  int num_vectors = 0;
  const double* alphas = nullptr;  // merge: K; apply: K x num_vectors, row-major
  int num_outputs = 0;
  void* const* outs = nullptr;
  DType out_dtype = kBF16;
  OutScale out_scale;
};

inline float load_scale(const void* scales, size_t index) {
  float s;
  std::memcpy(&s, static_cast<const char*>(scales) + index * sizeof(float), sizeof(float));
  return s;
}

inline void store_scale(void* scales, size_t index, float s) {
  std::memcpy(static_cast<char*>(scales) + index * sizeof(float), &s, sizeof(float));
}

// Calls fn(begin, end, index) for the runs of chunk elements [begin, end)
// that share one scale slot (index into the scale values). One division per
// call, none per element.
template <typename Fn>
inline void for_each_scale_run(const ScaleLayout& l, size_t begin, size_t end, Fn&& fn) {
  if (begin >= end) return;
  if (l.kind == kTensorScale || l.kind == kNoScale) {
    fn(begin, end, size_t{0});
    return;
  }
  const size_t e = l.first_element + begin;
  size_t row = e / l.cols;
  size_t col = e % l.cols;
  const size_t per_row = l.blocks_per_row();
  for (size_t i = begin; i < end;) {
    size_t run, index;
    if (l.kind == kRowScale) {
      run = l.cols - col;
      index = row - l.first_scale_row;
    } else {
      const size_t cb = col / l.block_cols;
      const size_t stop = (cb + 1) * l.block_cols < l.cols ? (cb + 1) * l.block_cols : l.cols;
      run = stop - col;
      index = (row / l.block_rows - l.first_scale_row) * per_row + cb;
    }
    run = run < end - i ? run : end - i;
    fn(i, i + run, index);
    i += run;
    col += run;
    if (col == l.cols) {
      col = 0;
      ++row;
    }
  }
}

// Elements per row of groups (a row, or a block-row) of an FP8 output.
inline size_t group_unit(const ScaleLayout& l) { return l.kind == kBlockScale ? l.block_rows * l.cols : l.cols; }

// The FP8 output layout of a chunk, as a ScaleLayout whose indices start at the chunk's first group.
inline ScaleLayout out_groups(const OutScale& o) {
  ScaleLayout l = o.layout;
  l.first_scale_row = l.first_element / l.cols / (l.kind == kBlockScale ? l.block_rows : 1);
  return l;
}

// The scale of a group from the largest finite |result| (its double bits):
// amax / 448 in float64, rounded once to float32; a group of zeros (or one
// whose scale underflows float32) gets scale 1. Beyond FLT_MAX * 448 the
// scale is +Inf, and the group's finite results quantize to zero (IEEE).
CHATVEC_HOST_DEVICE inline float fp8_group_scale(uint64_t amax_bits) {
  const double amax = bit_cast<double>(amax_bits);
  const float s = static_cast<float>(amax / 448.0);
  return (amax == 0.0 || s == 0.0f) ? 1.0f : s;
}

}  // namespace chatvec
