// The kernel for any CPU the compiler targets by default (x86-64 SSE2, aarch64 NEON).
#include "merge_kernel.h"

#define CHATVEC_ISA_NS baseline
#include "merge_kernel_impl.inc"
