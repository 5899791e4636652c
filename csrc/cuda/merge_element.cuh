// The CUDA kernel's arithmetic for one element, callable from host and device
// (CHATVEC_HOST_DEVICE, dtype_convert.h): decode with scale, combine in
// float64 in the order of merge_kernel_staged.inc, round once. The kernels in
// merge_kernel.cu are grid-stride loops around these functions; run_host()
// loops over them on the CPU, which is how the tests compare them bit for bit
// with the C++ kernel on a machine without a GPU.
#pragma once

#include "../dtype_convert.h"
#include "device_call.h"

namespace chatvec {
namespace cuda {

CHATVEC_HOST_DEVICE inline double decode(int dtype, const void* data, uint64_t i) {
  switch (dtype) {
    case kBF16: return bf16_to_double(static_cast<const uint16_t*>(data)[i]);
    case kF16: return f16_to_double(static_cast<const uint16_t*>(data)[i]);
    case kF32: return f32_to_double(static_cast<const float*>(data)[i]);
    case kF64: return static_cast<const double*>(data)[i];
    case kF8E4M3: return e4m3_to_double(static_cast<const uint8_t*>(data)[i]);
    default: return e5m2_to_double(static_cast<const uint8_t*>(data)[i]);
  }
}

// The ScaleLayout rule of kernel_call.h for chunk element i: a few integer
// divisions per element (the kernel is memory-bound: 3 loads of 1-2 bytes an
// element leave ~20 integer ops of slack on an H100). Index is the type they
// divide in: uint32_t when every element index and layout size of the call is
// below 2^32 (the GPU divides 32-bit integers inline; 64-bit division is a
// subroutine call whose ABI spilled a register pair to local memory on sm_90),
// else uint64_t (uses_wide_index()).
template <typename Index>
CHATVEC_HOST_DEVICE inline uint64_t scale_index(const DeviceInput& in, uint64_t i) {
  if (in.scale_kind == kTensorScale) return 0;
  const Index e = static_cast<Index>(in.first_element + i);
  const Index cols = static_cast<Index>(in.cols), block_cols = static_cast<Index>(in.block_cols);
  const Index row = e / cols;
  if (in.scale_kind == kRowScale) return row - in.first_scale_row;
  const uint64_t per_row = (cols + block_cols - 1) / block_cols;
  return (row / static_cast<Index>(in.block_rows) - in.first_scale_row) * per_row + (e - row * cols) / block_cols;
}

// Exact: decode(code) has at most 11 significant bits, the float32 scale 24.
template <typename Index>
CHATVEC_HOST_DEVICE inline double value(const DeviceInput& in, uint64_t i) {
  const double v = decode(in.dtype, in.data, i);
  if (in.scale_kind == kNoScale) return v;
  return v * static_cast<double>(in.scales[scale_index<Index>(in, i)]);
}

inline bool wide(const DeviceInput& in, uint64_t n) {
  const uint64_t big = 1ull << 32;
  return in.data != nullptr && in.scale_kind != kNoScale &&
         (in.first_element + n >= big || in.cols + in.block_cols >= big || in.block_rows >= big);
}

// Whether a call needs 64-bit index arithmetic (see scale_index).
inline bool uses_wide_index(const DeviceCall& c) {
  bool any = c.n >= (1ull << 32) || wide(c.base, c.n) || wide(c.chat, c.n) || wide(c.cp, c.n);
  for (int m = 0; m < c.num_vectors; ++m) any = any || wide(c.vectors[m], c.n);
  const uint64_t big = 1ull << 32;
  return any || (c.out_dtype == kF8E4M3 && (c.out_cols + c.out_block_cols >= big ||
                                            c.out_block_rows * c.out_cols >= big));
}

// The bits of x rounded once to a non-FP8 output dtype.
CHATVEC_HOST_DEVICE inline uint64_t round_to(int dtype, double x) {
  switch (dtype) {
    case kBF16: return double_to_bf16(x);
    case kF16: return double_to_f16(x);
    case kF32: return double_to_f32_bits(x);
    default: return double_to_f64_bits(x);
  }
}

CHATVEC_HOST_DEVICE inline void store_bits(int dtype, void* out, uint64_t i, uint64_t bits) {
  switch (dtype) {
    case kBF16:
    case kF16: static_cast<uint16_t*>(out)[i] = static_cast<uint16_t>(bits); break;
    case kF32: static_cast<uint32_t*>(out)[i] = static_cast<uint32_t>(bits); break;
    case kF8E4M3: static_cast<uint8_t*>(out)[i] = static_cast<uint8_t>(bits); break;
    default: static_cast<uint64_t*>(out)[i] = bits;
  }
}

// Calls emit(k, result_k) for each output k of element i. Merge and extract
// decode each operand once; apply decodes the vectors once per output (a
// K-long accumulator array would live in local memory).
template <typename Index, typename Emit>
CHATVEC_HOST_DEVICE inline void for_each_result(const DeviceCall& c, uint64_t i, Emit& emit) {
  switch (c.mode) {
    case kConvertMode: {
      const double cp = value<Index>(c.cp, i);
      for (int k = 0; k < c.num_outputs; ++k) emit(k, cp);
      break;
    }
    case kExtractMode: emit(0, value<Index>(c.chat, i) - value<Index>(c.base, i)); break;
    case kMergeMode: {
      const double cp = value<Index>(c.cp, i);
      const double delta = value<Index>(c.chat, i) - value<Index>(c.base, i);
      // Product rounded, then sum rounded (-fmad=false): the order every backend uses.
      for (int k = 0; k < c.num_outputs; ++k) emit(k, cp + c.alphas[k] * delta);
      break;
    }
    default: {  // apply: acc = cp; acc = acc + alpha[k][m] * v_m for m in order
      const double cp = value<Index>(c.cp, i);
      for (int k = 0; k < c.num_outputs; ++k) {
        double acc = cp;
        for (int m = 0; m < c.num_vectors; ++m) acc = acc + c.alphas[k * c.num_vectors + m] * value<Index>(c.vectors[m], i);
        emit(k, acc);
      }
    }
  }
}

// The FP8 output group of chunk element i (the chunk starts at a group row,
// so indices count from the chunk's first group).
template <typename Index>
CHATVEC_HOST_DEVICE inline uint64_t group_of(const DeviceCall& c, uint64_t element) {
  const Index i = static_cast<Index>(element), cols = static_cast<Index>(c.out_cols);
  if (c.out_scale_kind == kRowScale) return i / cols;
  const Index block_cols = static_cast<Index>(c.out_block_cols);
  const uint64_t per_row = (cols + block_cols - 1) / block_cols;
  return i / (static_cast<Index>(c.out_block_rows) * cols) * per_row + (i % cols) / block_cols;
}

// Pass 1 of an FP8 output (and the only pass otherwise): round and store; in
// extract mode, count the results the output dtype could not hold (NaN counts
// as exact, as in count_inexact()).
struct StoreResult {
  const DeviceCall& c;
  uint64_t i;
  unsigned long long inexact;
  CHATVEC_HOST_DEVICE void operator()(int k, double r) {
    const uint64_t bits = round_to(c.out_dtype, r);
    store_bits(c.out_dtype, c.outs[k], i, bits);
    if (c.mode == kExtractMode) {
      const uint64_t want = bit_cast<uint64_t>(r);
      const uint64_t got = bit_cast<uint64_t>(decode(c.out_dtype, c.outs[k], i));
      inexact += (got != want) & ((want & 0x7fffffffffffffffull) <= 0x7ff0000000000000ull);
    }
  }
};

// FP8 output, pass 1: fold |result| into its group's amax. Non-negative
// doubles order as their bit patterns, so an integer max is the float max.
template <typename Index>
struct FoldAmax {
  const DeviceCall& c;
  uint64_t i;
  CHATVEC_HOST_DEVICE void operator()(int k, double r) {
    const uint64_t mag = bit_cast<uint64_t>(r) & 0x7fffffffffffffffull;
    if (mag >= 0x7ff0000000000000ull || mag == 0) return;  // Inf and NaN do not count; zero changes nothing
    uint64_t* slot = c.amax + static_cast<uint64_t>(k) * c.groups + group_of<Index>(c, i);
#if defined(__CUDA_ARCH__)
    atomicMax(reinterpret_cast<unsigned long long*>(slot), static_cast<unsigned long long>(mag));
#else
    *slot = mag > *slot ? mag : *slot;
#endif
  }
};

// FP8 output, pass 3 (pass 2 wrote the group scales): the IEEE quotient by
// the group's scale, rounded once to e4m3.
template <typename Index>
struct Quantize {
  const DeviceCall& c;
  uint64_t i;
  CHATVEC_HOST_DEVICE void operator()(int k, double r) {
    const double s = static_cast<double>(c.out_scales[k][group_of<Index>(c, i)]);
    static_cast<uint8_t*>(c.outs[k])[i] = double_to_e4m3(r / s);
  }
};

}  // namespace cuda
}  // namespace chatvec
