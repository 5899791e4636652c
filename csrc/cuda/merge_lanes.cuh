// The vectorised merge's step, host and device: 16 bytes of each input (8
// bf16, 4 f32, 16 FP8 ... elements), merged and rounded, stored in the
// widest pieces the output allows (16 bytes when the results fill them).
// merge_kernel.cu's merge_vec is a grid-stride loop of these steps; run_host()
// runs the same steps on the CPU, so the tests cover the lane packing too.
#pragma once

#include <cuda_runtime.h>  // uint2, uint4

#include "merge_element.cuh"

namespace chatvec {
namespace cuda {

template <int Bytes>
struct Chunk;  // the widest store unit for Bytes bytes of results
template <>
struct Chunk<4> {
  using Type = uint32_t;
};
template <>
struct Chunk<8> {
  using Type = uint2;
};
template <>
struct Chunk<16> {
  using Type = uint4;
};

// 16 bytes of inputs of storage type S.
template <typename S>
struct Lanes {
  static constexpr int kCount = 16 / sizeof(S);
  union {
    uint4 vec;
    S lane[kCount];
  };
};

// The results of one step: Lanes<S>::kCount outputs of kOut bytes (4 to 128 bytes).
template <typename S, int kOut>
struct OutLanes {
  static constexpr int kBytes = Lanes<S>::kCount * kOut;
  static constexpr int kChunk = kBytes < 16 ? kBytes : 16;
  static constexpr int kPieces = kBytes / kChunk;
  using Piece = typename Chunk<kChunk>::Type;
  union {
    Piece piece[kPieces];
    uint16_t b16[kBytes / 2];
    uint32_t b32[kBytes / 4];
    uint64_t b64[kBytes / 8 > 0 ? kBytes / 8 : 1];
  };
  CHATVEC_HOST_DEVICE void put(int j, uint64_t bits) {
    if (kOut == 2) b16[j] = static_cast<uint16_t>(bits);
    if (kOut == 4) b32[j] = static_cast<uint32_t>(bits);
    if (kOut == 8) b64[j] = bits;
  }
};

// Step v: elements v * kCount .. v * kCount + kCount - 1. Product rounded,
// then sum rounded, as in for_each_result.
template <typename S, int kIn, int kOutDtype, int kOut>
CHATVEC_HOST_DEVICE inline void merge_step(const uint4* __restrict__ base, const uint4* __restrict__ chat,
                                           const uint4* __restrict__ cp, void* __restrict__ out, double alpha,
                                           uint64_t v) {
  using Out = OutLanes<S, kOut>;
  Lanes<S> b, c, p;
  b.vec = base[v];
  c.vec = chat[v];
  p.vec = cp[v];
  Out r;
#pragma unroll
  for (int j = 0; j < Lanes<S>::kCount; ++j) {
    r.put(j, round_to(kOutDtype, decode(kIn, p.lane + j, 0) +
                                     alpha * (decode(kIn, c.lane + j, 0) - decode(kIn, b.lane + j, 0))));
  }
  auto* o = static_cast<typename Out::Piece*>(out) + v * Out::kPieces;
#pragma unroll
  for (int q = 0; q < Out::kPieces; ++q) o[q] = r.piece[q];
}

// One element i of the tail (fewer than kCount elements after the last step).
template <typename S, int kIn, int kOutDtype>
CHATVEC_HOST_DEVICE inline void merge_tail(const S* base, const S* chat, const S* cp, void* out, double alpha,
                                           uint64_t i) {
  const double x = decode(kIn, cp + i, 0) + alpha * (decode(kIn, chat + i, 0) - decode(kIn, base + i, 0));
  store_bits(kOutDtype, out, i, round_to(kOutDtype, x));
}

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// Whether a call takes the vectorised merge: merge, one output (not FP8), one
// unscaled input dtype, every buffer 16-byte aligned.
inline bool fits_vector_path(const DeviceCall& c) {
  return c.mode == kMergeMode && c.num_outputs == 1 && c.out_dtype != kF8E4M3 && c.base.dtype == c.cp.dtype &&
         c.chat.dtype == c.cp.dtype && c.base.scale_kind == kNoScale && c.chat.scale_kind == kNoScale &&
         c.cp.scale_kind == kNoScale && aligned16(c.base.data) && aligned16(c.chat.data) && aligned16(c.cp.data) &&
         aligned16(c.outs[0]);
}

template <typename S, int kIn, typename Runner>
void dispatch_out(const DeviceCall& c, Runner& run) {
  switch (c.out_dtype) {
    case kBF16: return run.template go<S, kIn, kBF16, 2>();
    case kF16: return run.template go<S, kIn, kF16, 2>();
    case kF32: return run.template go<S, kIn, kF32, 4>();
    default: return run.template go<S, kIn, kF64, 8>();
  }
}

// Calls run.go<S, kIn, kOutDtype, kOut>() for a call that fits_vector_path().
template <typename Runner>
void dispatch_vector(const DeviceCall& c, Runner& run) {
  switch (c.cp.dtype) {
    case kBF16: return dispatch_out<uint16_t, kBF16>(c, run);
    case kF16: return dispatch_out<uint16_t, kF16>(c, run);
    case kF32: return dispatch_out<float, kF32>(c, run);
    case kF64: return dispatch_out<double, kF64>(c, run);
    case kF8E4M3: return dispatch_out<uint8_t, kF8E4M3>(c, run);
    default: return dispatch_out<uint8_t, kF8E5M2>(c, run);
  }
}

}  // namespace cuda
}  // namespace chatvec
