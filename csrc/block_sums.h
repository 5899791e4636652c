// The sums `chatvec inspect` reports (chatvec_fast/inspection/sums.py), per block of a tensor's elements:
//   base.base, delta.delta, cp_delta.cp_delta, delta.cp_delta     delta = chat - base, cp_delta = cp - base
// (without cp: the first two). Every element is widened exactly to float64 (bf16, f16, f32, f64 inputs;
// FP8 inputs arrive already widened with their scales, as f64) and each product is summed compensated.
#pragma once

#include <cstdint>

#include "dtype_convert.h"

namespace chatvec {

constexpr int kMaxBlockSums = 4;

struct SumsInput {
  const void* data = nullptr;  // n elements of `dtype` (kBF16, kF16, kF32 or kF64)
  DType dtype = kF64;
};

// out[r * n_sums + k]: sum k of block r (elements [r * block, min((r + 1) * block, n))); n_sums is 4 with cp,
// 2 without (cp.data == nullptr). A block's sums depend only on its elements, never on how many blocks one
// call is given, so chunked input gives the same sums.
void block_sums(const SumsInput& base, const SumsInput& chat, const SumsInput& cp, int64_t n, int64_t block,
                double* out);

}  // namespace chatvec
