// The C++ tests' failure counter and CHECK macro (defined in test_kernel.cpp).
#pragma once

#include <cstdio>

extern int g_failures;

#define CHECK(cond, ...)                                            \
  do {                                                              \
    if (!(cond)) {                                                  \
      if (++g_failures <= 20) {                                     \
        std::printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
        std::printf(__VA_ARGS__);                                   \
        std::printf("\n");                                          \
      }                                                             \
    }                                                               \
  } while (0)

// test_fp8_convert.cpp: FP8 decoding and e4m3 rounding.
void test_fp8_conversions();
// test_fp8_kernel.cpp: scaled inputs, FP8 output, several vectors.
void test_fp8_kernel_calls();
