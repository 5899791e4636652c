// The Chat Vector kernel in CUDA C++: the modes and dtypes of
// csrc/merge_kernel.h, bit-identical to it (merge_element.cuh has the
// arithmetic). Build flags (setup_cuda.py): -fmad=false so no DFMA fuses the
// product into the sum; never -ftz or --use_fast_math, which flush subnormals.
//
//   merge_vec   the common case (merge, one output, one unscaled input dtype,
//               16-byte aligned pointers): 16-byte loads, V = 16 / itemsize
//               elements a thread a step, a scalar tail
//   merge_any   everything else: one element a thread a step
//   fp8 output  three launches: fold amax, write the group scales, quantize
//
// Grid-stride loops with 64-bit indices: a grid of at most 32 blocks a
// multiprocessor covers any n.
#include <cuda_runtime.h>

#include <algorithm>

#include "merge_element.cuh"

namespace chatvec {
namespace cuda {
namespace {

constexpr int kThreads = 256;

template <int Bytes>
struct Chunk;  // the widest store unit for Bytes bytes of results
template <>
struct Chunk<2> {
  using Type = uint16_t;
};
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

template <typename S>
struct Lanes {
  static constexpr int kCount = 16 / sizeof(S);
  union {
    uint4 vec;
    S lane[kCount];
  };
};

template <typename S, int kOut>
struct OutLanes {
  static constexpr int kBytes = Lanes<S>::kCount * kOut;
  static constexpr int kChunk = kBytes < 16 ? kBytes : 16;
  using Piece = typename Chunk<kChunk>::Type;
  union {
    Piece piece[kBytes / kChunk];
    uint8_t b8[kBytes];
    uint16_t b16[kBytes / 2];
    uint32_t b32[kBytes / 4 > 0 ? kBytes / 4 : 1];
    uint64_t b64[kBytes / 8 > 0 ? kBytes / 8 : 1];
  };
};

template <typename S, int kOut>
__device__ __forceinline__ void put_bits(OutLanes<S, kOut>& o, int j, uint64_t bits) {
  if (kOut == 2) o.b16[j] = static_cast<uint16_t>(bits);
  if (kOut == 4) o.b32[j] = static_cast<uint32_t>(bits);
  if (kOut == 8) o.b64[j] = bits;
}

// base, chat, cp: n elements of storage type S (dtype kIn), 16-byte aligned;
// out: n elements of dtype kOutDtype (kOut bytes each), 16-byte aligned.
template <typename S, int kIn, int kOutDtype, int kOut>
__global__ void __launch_bounds__(kThreads) merge_vec(const uint4* __restrict__ base, const uint4* __restrict__ chat,
                                                      const uint4* __restrict__ cp, void* __restrict__ out,
                                                      double alpha, uint64_t n) {
  constexpr int V = Lanes<S>::kCount;
  using Out = OutLanes<S, kOut>;
  using Piece = typename Out::Piece;
  constexpr int kPieces = Out::kBytes / Out::kChunk;
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  const uint64_t first = static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const uint64_t vectors = n / V;
  Piece* __restrict__ o = static_cast<Piece*>(out);
  for (uint64_t v = first; v < vectors; v += stride) {
    Lanes<S> b, c, p;
    b.vec = base[v];
    c.vec = chat[v];
    p.vec = cp[v];
    Out r;
#pragma unroll
    for (int j = 0; j < V; ++j) {
      const double x = decode(kIn, p.lane + j, 0) + alpha * (decode(kIn, c.lane + j, 0) - decode(kIn, b.lane + j, 0));
      put_bits(r, j, round_to(kOutDtype, x));
    }
#pragma unroll
    for (int q = 0; q < kPieces; ++q) o[v * kPieces + q] = r.piece[q];
  }
  // The tail, fewer than V elements.
  const S* b = reinterpret_cast<const S*>(base);
  const S* c = reinterpret_cast<const S*>(chat);
  const S* p = reinterpret_cast<const S*>(cp);
  for (uint64_t i = vectors * V + first; i < n; i += stride) {
    const double x = decode(kIn, p + i, 0) + alpha * (decode(kIn, c + i, 0) - decode(kIn, b + i, 0));
    store_bits(kOutDtype, out, i, round_to(kOutDtype, x));
  }
}

enum PassKind { kStorePass, kAmaxPass, kQuantizePass };

template <int kPass, typename Index>
__global__ void __launch_bounds__(kThreads) merge_any(const DeviceCall c) {
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  unsigned long long inexact = 0;
  for (uint64_t i = static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < c.n; i += stride) {
    if (kPass == kStorePass) {
      StoreResult emit{c, i, 0};
      for_each_result<Index>(c, i, emit);
      inexact += emit.inexact;
    } else if (kPass == kAmaxPass) {
      FoldAmax<Index> emit{c, i};
      for_each_result<Index>(c, i, emit);
    } else {
      Quantize<Index> emit{c, i};
      for_each_result<Index>(c, i, emit);
    }
  }
  if (kPass == kStorePass && c.mode == kExtractMode && inexact) atomicAdd(c.count, inexact);
}

// FP8 output, pass 2: each group's scale from its amax.
__global__ void __launch_bounds__(kThreads) group_scales(const DeviceCall c) {
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  const uint64_t total = static_cast<uint64_t>(c.num_outputs) * c.groups;
  for (uint64_t j = static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < total; j += stride) {
    c.out_scales[j / c.groups][j % c.groups] = fp8_group_scale(c.amax[j]);
  }
}

// Blocks for `work` items: enough to fill the device (32 blocks of 256 a
// multiprocessor keep 8192 threads in flight, a full SM of an H100 is 2048),
// no more than the work needs.
unsigned blocks_for(uint64_t work) {
  static int sms = 0;
  if (sms == 0) {
    int device = 0, count = 0;
    if (cudaGetDevice(&device) == cudaSuccess &&
        cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device) == cudaSuccess) {
      sms = count;
    } else {
      sms = 132;
    }
  }
  const uint64_t need = (work + kThreads - 1) / kThreads;
  return static_cast<unsigned>(std::max<uint64_t>(1, std::min<uint64_t>(need, static_cast<uint64_t>(sms) * 32)));
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

template <typename S, int kIn>
bool launch_vec_out(const DeviceCall& c, cudaStream_t s) {
  const auto* b = static_cast<const uint4*>(c.base.data);
  const auto* h = static_cast<const uint4*>(c.chat.data);
  const auto* p = static_cast<const uint4*>(c.cp.data);
  const unsigned grid = blocks_for(c.n / Lanes<S>::kCount + 1);
  switch (c.out_dtype) {
    case kBF16: merge_vec<S, kIn, kBF16, 2><<<grid, kThreads, 0, s>>>(b, h, p, c.outs[0], c.alphas[0], c.n); return true;
    case kF16: merge_vec<S, kIn, kF16, 2><<<grid, kThreads, 0, s>>>(b, h, p, c.outs[0], c.alphas[0], c.n); return true;
    case kF32: merge_vec<S, kIn, kF32, 4><<<grid, kThreads, 0, s>>>(b, h, p, c.outs[0], c.alphas[0], c.n); return true;
    case kF64: merge_vec<S, kIn, kF64, 8><<<grid, kThreads, 0, s>>>(b, h, p, c.outs[0], c.alphas[0], c.n); return true;
  }
  return false;
}

// The 16-byte path when the call fits it; false when it does not.
bool launch_vec(const DeviceCall& c, cudaStream_t s) {
  const bool fits = c.mode == kMergeMode && c.num_outputs == 1 && c.out_dtype != kF8E4M3 &&
                    c.base.dtype == c.cp.dtype && c.chat.dtype == c.cp.dtype && c.base.scale_kind == kNoScale &&
                    c.chat.scale_kind == kNoScale && c.cp.scale_kind == kNoScale && aligned16(c.base.data) &&
                    aligned16(c.chat.data) && aligned16(c.cp.data) && aligned16(c.outs[0]);
  if (!fits) return false;
  switch (c.cp.dtype) {
    case kBF16: return launch_vec_out<uint16_t, kBF16>(c, s);
    case kF16: return launch_vec_out<uint16_t, kF16>(c, s);
    case kF32: return launch_vec_out<float, kF32>(c, s);
    case kF64: return launch_vec_out<double, kF64>(c, s);
    case kF8E4M3: return launch_vec_out<uint8_t, kF8E4M3>(c, s);
    case kF8E5M2: return launch_vec_out<uint8_t, kF8E5M2>(c, s);
  }
  return false;
}

std::string error_text(const char* what, cudaError_t e) {
  return std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
}

template <typename Index>
std::string launch_any(const DeviceCall& c, cudaStream_t s) {
  cudaError_t e = cudaSuccess;
  const unsigned grid = blocks_for(c.n);
  if (c.out_dtype == kF8E4M3) {
    e = cudaMemsetAsync(c.amax, 0, sizeof(uint64_t) * c.num_outputs * c.groups, s);
    if (e != cudaSuccess) return error_text("cudaMemsetAsync(amax)", e);
    merge_any<kAmaxPass, Index><<<grid, kThreads, 0, s>>>(c);
    group_scales<<<blocks_for(c.num_outputs * c.groups), kThreads, 0, s>>>(c);
    merge_any<kQuantizePass, Index><<<grid, kThreads, 0, s>>>(c);
  } else {
    merge_any<kStorePass, Index><<<grid, kThreads, 0, s>>>(c);
  }
  return "";
}

}  // namespace

std::string launch(const DeviceCall& c, void* stream) {
  if (c.n == 0 || c.num_outputs == 0) return "";
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  cudaError_t e = cudaSuccess;
  if (c.mode == kExtractMode) {
    e = cudaMemsetAsync(c.count, 0, sizeof(unsigned long long), s);
    if (e != cudaSuccess) return error_text("cudaMemsetAsync(count)", e);
  }
  if (!launch_vec(c, s)) {
    const std::string error = uses_wide_index(c) ? launch_any<uint64_t>(c, s) : launch_any<uint32_t>(c, s);
    if (!error.empty()) return error;
  }
  e = cudaGetLastError();
  return e == cudaSuccess ? "" : error_text("kernel launch", e);
}

namespace {

// run_host() for one index type: the passes of launch(), one element at a time.
template <typename Index>
void run_host_with(const DeviceCall& c) {
  if (c.out_dtype == kF8E4M3) {
    for (uint64_t j = 0; j < static_cast<uint64_t>(c.num_outputs) * c.groups; ++j) c.amax[j] = 0;
    for (uint64_t i = 0; i < c.n; ++i) {
      FoldAmax<Index> emit{c, i};
      for_each_result<Index>(c, i, emit);
    }
    for (uint64_t j = 0; j < static_cast<uint64_t>(c.num_outputs) * c.groups; ++j) {
      c.out_scales[j / c.groups][j % c.groups] = fp8_group_scale(c.amax[j]);
    }
    for (uint64_t i = 0; i < c.n; ++i) {
      Quantize<Index> emit{c, i};
      for_each_result<Index>(c, i, emit);
    }
    return;
  }
  unsigned long long inexact = 0;
  for (uint64_t i = 0; i < c.n; ++i) {
    StoreResult emit{c, i, 0};
    for_each_result<Index>(c, i, emit);
    inexact += emit.inexact;
  }
  if (c.mode == kExtractMode) *c.count = inexact;
}

}  // namespace

// The same index type as launch() picks, so the host run covers the 32-bit path the device takes.
void run_host(const DeviceCall& c) {
  if (uses_wide_index(c)) {
    run_host_with<uint64_t>(c);
  } else {
    run_host_with<uint32_t>(c);
  }
}

int device_count(std::string* error) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    *error = error_text("no CUDA device: cudaGetDeviceCount", e);
    return 0;
  }
  if (count == 0) *error = "no CUDA device: cudaGetDeviceCount found 0";
  return count;
}

int runtime_version() {
  int v = 0;
  return cudaRuntimeGetVersion(&v) == cudaSuccess ? v : 0;
}

int driver_version() {
  int v = 0;
  return cudaDriverGetVersion(&v) == cudaSuccess ? v : 0;
}

}  // namespace cuda
}  // namespace chatvec
