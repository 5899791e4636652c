// The fused Chat Vector kernel. Four modes of one call (kernel_call.h: FP8
// operands with scales, FP8 output, several vectors):
//
//   merge    base, chat, cp   out_k = cp + alpha_k * (chat - base)   k = 1..K
//   apply    cp, vectors      out_k = cp + alpha_k,1 * v_1 + ...      (saved chat vectors)
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
#include <type_traits>
#include <vector>

#include "dtype_convert.h"
#include "kernel_call.h"

namespace chatvec {

// Runs one call over all n elements on up to `threads` threads (0: all cores);
// the one entry point. The caller has checked it (bindings_run.cpp: operands
// of the mode, buffer and scale sizes, 1 <= num_vectors <= kMaxVectors, FP8
// output exactly when out_scale is given, its first_element a multiple of the
// group unit). Returns, in extract mode, how many results the output dtype
// could not hold exactly (else 0).
size_t run(const KernelCall& call, int threads);

// Name of the instruction set the dispatcher picked: "x86-64-v4", "x86-64-v3",
// "baseline".
std::string active_isa();

// Instruction sets this build has and this CPU runs, best first.
std::vector<std::string> supported_isas();

// Forces one of supported_isas() (tests compare them bit for bit). The
// environment variable CHATVEC_ISA does the same at start-up.
void set_isa(const std::string& name);

// ---- internal: one pass of the kernel over a range of elements -------------

// kStore writes the outputs. With an FP8 output the driver makes two passes:
// kAmax folds the largest finite |result| of each group into amax (double
// bits, K rows of `groups` entries for the groups first_group.. that the range
// touches), then kQuantize divides by the group scales already written to
// out_scale and rounds.
struct Pass {
  enum Kind { kStore, kAmax, kQuantize } kind = kStore;
  uint64_t* amax = nullptr;
  size_t first_group = 0;
  size_t groups = 0;
};

// The kernel over elements [begin, end) with the active instruction set.
size_t kernel_range(const KernelCall& call, size_t begin, size_t end, const Pass& pass);

}  // namespace chatvec
