// The kernel for x86-64-v4 CPUs (AVX-512 F/BW/DQ/VL: Skylake-SP, Zen 4 and later).
// Compiled with a target pragma rather than a global -march flag, so one build
// runs everywhere and picks this code at run time (merge_kernel_dispatch.cpp).
#include "merge_kernel.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC target("arch=x86-64-v4")
#define CHATVEC_ISA_NS x86_64_v4
#include "merge_kernel_impl.inc"
#pragma GCC pop_options
#endif
