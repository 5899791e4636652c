// One kernel call as the CUDA kernel takes it: raw pointers (device memory, or
// host memory for run_host), dtype and scale codes, alphas by value. Plain
// data, no CUDA types, so the pybind11 bindings compile without CUDA headers
// and the whole struct is passed to the kernel as a parameter: 3600 bytes,
// under the 4 KB every CUDA version and driver takes.
#pragma once

#include <cstdint>
#include <string>

#include "../kernel_call.h"

namespace chatvec {
namespace cuda {

// Outputs one launch writes; the Python side splits a call with more into
// launches of at most this many (each output is independent of the others).
constexpr int kMaxOutputs = 16;

// An operand: element i of the chunk is decode(data[i]) * scales[index(i)]
// (kernel_call.h ScaleLayout gives index(); kNoScale: scale 1).
struct DeviceInput {
  const void* data;
  int dtype;       // DType
  int scale_kind;  // ScaleKind
  const float* scales;
  uint64_t cols, first_element, block_rows, block_cols, first_scale_row;
};

struct DeviceCall {
  int mode;  // Mode
  int num_vectors;
  int num_outputs;
  int out_dtype;  // DType
  uint64_t n;
  DeviceInput base, chat, cp;
  DeviceInput vectors[kMaxVectors];
  double alphas[kMaxOutputs * kMaxVectors];  // merge: alphas[k]; apply: alphas[k * num_vectors + m]
  void* outs[kMaxOutputs];
  // F8_E4M3 output: groups of `out_cols`-element rows (kRowScale) or
  // out_block_rows x out_block_cols blocks (kBlockScale); the chunk starts at a
  // group row. amax: num_outputs x groups words, workspace for the largest
  // finite |result| of each group (its double bits).
  int out_scale_kind;
  uint64_t out_cols, out_block_rows, out_block_cols, groups;
  float* out_scales[kMaxOutputs];
  uint64_t* amax;
  unsigned long long* count;  // extract: results the output dtype rounded (one word)
};

// Enqueues the call on `stream` (a cudaStream_t; 0: the legacy default
// stream) and returns "" or the CUDA error.
std::string launch(const DeviceCall& call, void* stream);

// The same element code run on the host, on host pointers, one thread: how
// the tests check the kernel's arithmetic where there is no GPU.
void run_host(const DeviceCall& call);

// CUDA devices visible here; 0 with the reason in *error when there are none.
int device_count(std::string* error);

// The CUDA runtime this extension was built with (e.g. 13000), and the
// driver's (0 without a driver).
int runtime_version();
int driver_version();

}  // namespace cuda
}  // namespace chatvec
