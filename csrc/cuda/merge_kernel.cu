// The Chat Vector kernel in CUDA C++: the modes and dtypes of
// csrc/merge_kernel.h, bit-identical to it (merge_element.cuh has the
// arithmetic, merge_lanes.cuh the 16-byte step). Flags (nvcc_flags.txt): -fmad=false so no DFMA fuses the
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
#include "merge_lanes.cuh"

namespace chatvec {
namespace cuda {
namespace {

constexpr int kThreads = 256;

// base, chat, cp: n elements of storage type S (dtype kIn), 16-byte aligned;
// out: n elements of dtype kOutDtype (kOut bytes each), 16-byte aligned.
template <typename S, int kIn, int kOutDtype, int kOut>
__global__ void __launch_bounds__(kThreads) merge_vec(const uint4* __restrict__ base, const uint4* __restrict__ chat,
                                                      const uint4* __restrict__ cp, void* __restrict__ out,
                                                      double alpha, uint64_t n) {
  constexpr int V = Lanes<S>::kCount;
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  const uint64_t first = static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const uint64_t steps = n / V;
  for (uint64_t v = first; v < steps; v += stride) merge_step<S, kIn, kOutDtype, kOut>(base, chat, cp, out, alpha, v);
  for (uint64_t i = steps * V + first; i < n; i += stride) {
    merge_tail<S, kIn, kOutDtype>(reinterpret_cast<const S*>(base), reinterpret_cast<const S*>(chat),
                                  reinterpret_cast<const S*>(cp), out, alpha, i);
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

// Launches merge_vec for the types dispatch_vector() picks.
struct LaunchVector {
  const DeviceCall& c;
  cudaStream_t s;
  template <typename S, int kIn, int kOutDtype, int kOut>
  void go() {
    const unsigned grid = blocks_for(c.n / Lanes<S>::kCount + 1);
    merge_vec<S, kIn, kOutDtype, kOut><<<grid, kThreads, 0, s>>>(static_cast<const uint4*>(c.base.data),
                                                                  static_cast<const uint4*>(c.chat.data),
                                                                  static_cast<const uint4*>(c.cp.data), c.outs[0],
                                                                  c.alphas[0], c.n);
  }
};

// The same steps, one after another on the CPU.
struct RunVectorOnHost {
  const DeviceCall& c;
  template <typename S, int kIn, int kOutDtype, int kOut>
  void go() {
    constexpr int V = Lanes<S>::kCount;
    const auto* b = static_cast<const uint4*>(c.base.data);
    const auto* h = static_cast<const uint4*>(c.chat.data);
    const auto* p = static_cast<const uint4*>(c.cp.data);
    for (uint64_t v = 0; v < c.n / V; ++v) merge_step<S, kIn, kOutDtype, kOut>(b, h, p, c.outs[0], c.alphas[0], v);
    for (uint64_t i = c.n / V * V; i < c.n; ++i) {
      merge_tail<S, kIn, kOutDtype>(static_cast<const S*>(c.base.data), static_cast<const S*>(c.chat.data),
                                    static_cast<const S*>(c.cp.data), c.outs[0], c.alphas[0], i);
    }
  }
};

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
  if (fits_vector_path(c)) {
    LaunchVector run{c, s};
    dispatch_vector(c, run);
  } else {
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

// The same path and index type as launch() picks, so the host run covers the
// 16-byte steps and the 32-bit index arithmetic the device runs.
void run_host(const DeviceCall& c) {
  if (fits_vector_path(c)) {
    RunVectorOnHost run{c};
    dispatch_vector(c, run);
  } else if (uses_wide_index(c)) {
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
