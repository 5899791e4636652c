// Block sums for `chatvec inspect` (block_sums.h). Each block is summed in kLanes interleaved lanes (element
// i of the block in lane i % kLanes), each lane compensated: TwoSum (Knuth) keeps the rounding error of every
// addition and adds the errors apart, so a block of 65,536 products is summed as if in about twice float64's
// precision (numpy's pairwise sum, which this replaces, loses up to log2(65,536) = 16 roundings). The lanes
// are combined in a fixed order, so a block's sums depend only on its elements. 1 pass over the inputs' own
// bytes: 6 bytes an element for a bf16 triple, against ~100 for numpy's widened float64 temporaries.
#include "block_sums.h"

#include <cmath>
#include <cstring>

namespace chatvec {
namespace {

constexpr int kLanes = 4;       // 4 doubles: one AVX2 register per lane group
constexpr int64_t kTile = 512;  // elements widened at a time into the stack (3 x 4 KiB: stays in L1)

struct Lanes {
  double sum[kMaxBlockSums][kLanes];
  double err[kMaxBlockSums][kLanes];
};

// always_inline: the helpers are compiled into each clone of sum_blocks (AVX2 and SSE2), not called from it
#define CHATVEC_INLINE inline __attribute__((always_inline))

CHATVEC_INLINE void two_sum_add(double& sum, double& err, double x) {
  const double t = sum + x;
  const double z = t - sum;
  err += (sum - (t - z)) + (x - z);
  sum = t;
}

CHATVEC_INLINE void widen(const SumsInput& in, int64_t first, int64_t n, double* out) {
  switch (in.dtype) {
    case kBF16: {
      const uint16_t* p = static_cast<const uint16_t*>(in.data) + first;
      for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_double(p[i]);
      break;
    }
    case kF16: {
      const uint16_t* p = static_cast<const uint16_t*>(in.data) + first;
      for (int64_t i = 0; i < n; ++i) out[i] = f16_to_double(p[i]);
      break;
    }
    case kF32: {
      const float* p = static_cast<const float*>(in.data) + first;
      for (int64_t i = 0; i < n; ++i) out[i] = static_cast<double>(p[i]);
      break;
    }
    default:
      std::memcpy(out, static_cast<const double*>(in.data) + first, static_cast<size_t>(n) * sizeof(double));
  }
}

// Adds elements [0, n) of the tile, which start at position `at` of their block (at % kLanes == 0).
template <bool kWithCp>
CHATVEC_INLINE void add_tile(Lanes& acc, const double* b, const double* c, const double* p, int64_t n) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      const double base = b[i + l], delta = c[i + l] - base;
      two_sum_add(acc.sum[0][l], acc.err[0][l], base * base);
      two_sum_add(acc.sum[1][l], acc.err[1][l], delta * delta);
      if (kWithCp) {
        const double cp_delta = p[i + l] - base;
        two_sum_add(acc.sum[2][l], acc.err[2][l], cp_delta * cp_delta);
        two_sum_add(acc.sum[3][l], acc.err[3][l], delta * cp_delta);
      }
    }
  }
  for (int l = 0; i < n; ++i, ++l) {  // a block's last elements (only the tensor's last block is not whole)
    const double base = b[i], delta = c[i] - base;
    two_sum_add(acc.sum[0][l], acc.err[0][l], base * base);
    two_sum_add(acc.sum[1][l], acc.err[1][l], delta * delta);
    if (kWithCp) {
      const double cp_delta = p[i] - base;
      two_sum_add(acc.sum[2][l], acc.err[2][l], cp_delta * cp_delta);
      two_sum_add(acc.sum[3][l], acc.err[3][l], delta * cp_delta);
    }
  }
}

// The lanes' sums, rounded once. A non-finite lane (an Inf or NaN input, a square past float64's range)
// gives the lanes' plain IEEE sum, as adding the elements would.
CHATVEC_INLINE double combine(const double* sum, const double* err) {
  double plain = 0.0;
  for (int l = 0; l < kLanes; ++l) plain += sum[l];
  if (!std::isfinite(plain)) return plain;
  double total = sum[0], carried = err[0];
  for (int l = 1; l < kLanes; ++l) {
    two_sum_add(total, carried, sum[l]);
    carried += err[l];
  }
  return total + carried;
}

template <bool kWithCp>
CHATVEC_INLINE void sum_blocks(const SumsInput& base, const SumsInput& chat, const SumsInput& cp, int64_t n,
                               int64_t block, double* out) {
  constexpr int kSums = kWithCp ? 4 : 2;
  alignas(64) double b[kTile], c[kTile], p[kTile];
  for (int64_t start = 0, row = 0; start < n; start += block, ++row) {
    const int64_t end = start + block < n ? start + block : n;
    Lanes acc{};
    for (int64_t first = start; first < end; first += kTile) {
      const int64_t m = end - first < kTile ? end - first : kTile;
      widen(base, first, m, b);
      widen(chat, first, m, c);
      if (kWithCp) widen(cp, first, m, p);
      add_tile<kWithCp>(acc, b, c, p, m);
    }
    for (int k = 0; k < kSums; ++k) out[row * kSums + k] = combine(acc.sum[k], acc.err[k]);
  }
}

// AVX2 where the CPU has it (chosen when the module loads), SSE2 elsewhere: the lanes' arithmetic, and so
// every sum, is the same in both (no fused multiply-add: -ffp-contract=off, csrc/compile_flags.txt)
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CHATVEC_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define CHATVEC_CLONES
#endif

CHATVEC_CLONES void sum_blocks_with_cp(const SumsInput& base, const SumsInput& chat, const SumsInput& cp,
                                       int64_t n, int64_t block, double* out) {
  sum_blocks<true>(base, chat, cp, n, block, out);
}

CHATVEC_CLONES void sum_blocks_without_cp(const SumsInput& base, const SumsInput& chat, int64_t n, int64_t block,
                                          double* out) {
  sum_blocks<false>(base, chat, SumsInput{}, n, block, out);
}

}  // namespace

void block_sums(const SumsInput& base, const SumsInput& chat, const SumsInput& cp, int64_t n, int64_t block,
                double* out) {
  if (cp.data != nullptr)
    sum_blocks_with_cp(base, chat, cp, n, block, out);
  else
    sum_blocks_without_cp(base, chat, n, block, out);
}

}  // namespace chatvec
