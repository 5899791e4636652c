// Shared by the binding files (bindings.cpp, bindings_run.cpp): dtype codes
// and the buffer checks that keep the kernel inside the memory it is given.
#pragma once

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "merge_kernel.h"

namespace chatvec {

namespace py = pybind11;

// The names Python uses for the codes (chatvec_fast/kernel_codes.py, which tests/test_kernel_codes.py checks
// against these tables through the module's DTYPE_CODES, MODE_CODES and SCALE_KIND_CODES).
struct NamedCode {
  const char* name;
  int code;
};
constexpr NamedCode kDTypeNames[] = {{"F32", kF32},         {"F16", kF16},        {"BF16", kBF16},
                                     {"F64", kF64},         {"F8_E4M3", kF8E4M3}, {"F8_E5M2", kF8E5M2}};
constexpr NamedCode kModeNames[] = {
    {"merge", kMergeMode}, {"apply", kApplyMode}, {"extract", kExtractMode}, {"convert", kConvertMode}};
constexpr NamedCode kScaleKindNames[] = {{"tensor", kTensorScale}, {"row", kRowScale}, {"block", kBlockScale}};

template <size_t N>
py::dict code_table(const NamedCode (&names)[N]) {
  py::dict table;
  for (const auto& n : names) table[n.name] = n.code;
  return table;
}

inline DType to_dtype(int code, const std::string& what) {
  if (code < kF32 || code > kF8E5M2)
    throw py::value_error(what + ": unknown dtype code " + std::to_string(code) +
                          " (expected 0 = F32, 1 = F16, 2 = BF16, 3 = F64, 4 = F8_E4M3, 5 = F8_E5M2)");
  return static_cast<DType>(code);
}

inline DType to_out_dtype(int code, const std::string& what) {
  const DType d = to_dtype(code, what);
  if (d == kF8E5M2) throw py::value_error(what + ": F8_E5M2 is not an output dtype (F8_E4M3 is)");
  return d;
}

// A contiguous buffer of at least `need` bytes; keeps the view alive. Hidden, like pybind11's own types.
struct __attribute__((visibility("hidden"))) Buffer {
  py::buffer_info info;
  Buffer(const py::buffer& obj, size_t need, bool writable, const std::string& what) : info(obj.request(writable)) {
    const size_t have = static_cast<size_t>(info.size) * static_cast<size_t>(info.itemsize);
    if (have < need)
      throw py::value_error(what + ": buffer holds " + std::to_string(have) + " bytes, the kernel needs " +
                            std::to_string(need));
    // C-contiguity: strides must equal the packed strides.
    py::ssize_t expected = info.itemsize;
    for (py::ssize_t d = info.ndim - 1; d >= 0; --d) {
      if (info.shape[d] > 1 && info.strides[d] != expected) throw py::value_error(what + ": buffer is not contiguous");
      expected *= info.shape[d];
    }
  }
  void* ptr() const { return info.ptr; }
};

// The general call, bound as _C.run (bindings_run.cpp).
size_t py_run(int mode, size_t n, const py::object& base, const py::object& chat, const py::object& cp,
              const std::vector<py::object>& vectors, const std::vector<std::vector<double>>& alphas,
              const std::vector<py::buffer>& outs, int out_dtype, const py::object& out_scale, int threads);

}  // namespace chatvec
