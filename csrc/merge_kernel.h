// The fused Chat Vector kernel:  out_k = cp + alpha_k * (chat - base),  k = 1..K.
//
// Every element is widened exactly to float64, combined with float64 math in a
// fixed order (no fused multiply-add: the build passes -ffp-contract=off so the
// Triton and torch backends, which also round the product, agree bit for bit)
// and rounded once to the output dtype.
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>
#include <vector>

#include "dtype_convert.h"

namespace chatvec {

struct MergeArgs {
  const void* base = nullptr;  // nullptr: no delta, out = round(cp) (dtype conversion)
  DType base_dtype = kBF16;
  const void* chat = nullptr;
  DType chat_dtype = kBF16;
  const void* cp = nullptr;
  DType cp_dtype = kBF16;
  size_t n = 0;                  // elements in every buffer
  const double* alphas = nullptr;
  int num_outputs = 0;           // K
  void* const* outs = nullptr;   // K output buffers of n elements each
  DType out_dtype = kBF16;
};

// Runs the kernel over elements [begin, end) with the best instruction set
// this CPU supports (chosen once, at the first call).
void merge_range(const MergeArgs& args, size_t begin, size_t end);

// Runs the kernel over all n elements on up to `threads` threads (0: all cores).
void merge(const MergeArgs& args, int threads);

// Name of the instruction set the dispatcher picked: "x86-64-v4", "x86-64-v3",
// "baseline".
std::string active_isa();

// Instruction sets this build has and this CPU runs, best first.
std::vector<std::string> supported_isas();

// Forces one of supported_isas() (tests compare them bit for bit). The
// environment variable CHATVEC_ISA does the same at start-up.
void set_isa(const std::string& name);

}  // namespace chatvec
