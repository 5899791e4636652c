// The fused Chat Vector kernel. Four modes, chosen by which inputs are given:
//
//   merge    base, chat, cp   out_k = cp + alpha_k * (chat - base)   k = 1..K
//   apply    chat, cp         out_k = cp + alpha_k * chat             (chat holds a saved chat vector)
//   extract  base, chat       out   = chat - base                     (counts inexact elements)
//   convert  cp               out_k = cp                              (a dtype conversion)
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
  const void* base = nullptr;  // see the modes above
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

// Whether the given inputs make one of the four modes.
bool valid_mode(const MergeArgs& args);

// Runs the kernel over elements [begin, end) with the best instruction set
// this CPU supports (chosen once, at the first call). Returns, in extract
// mode, how many results the output dtype could not hold exactly (else 0).
size_t merge_range(const MergeArgs& args, size_t begin, size_t end);

// Runs the kernel over all n elements on up to `threads` threads (0: all
// cores); returns merge_range's count summed.
size_t merge(const MergeArgs& args, int threads);

// Name of the instruction set the dispatcher picked: "x86-64-v4", "x86-64-v3",
// "baseline".
std::string active_isa();

// Instruction sets this build has and this CPU runs, best first.
std::vector<std::string> supported_isas();

// Forces one of supported_isas() (tests compare them bit for bit). The
// environment variable CHATVEC_ISA does the same at start-up.
void set_isa(const std::string& name);

}  // namespace chatvec
