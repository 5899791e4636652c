// Shared by the binding files (bindings.cpp, bindings_run.cpp, bindings_block_sums.cpp): the names
// Python uses for the kernel's codes, and the buffer check that keeps the
// kernel inside the memory it is given.
#pragma once

#include <pybind11/pybind11.h>

#include <cstddef>
#include <string>

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

// A contiguous buffer of at least `need` bytes, writable when asked; keeps the
// view (and so the object) alive. Hidden, like pybind11's own types.
struct __attribute__((visibility("hidden"))) Buffer {
  py::buffer_info info;
  Buffer(const py::handle& obj, size_t need, bool writable, const std::string& what) {
    if (!PyObject_CheckBuffer(obj.ptr()))
      throw py::value_error(what + ": a " + std::string(Py_TYPE(obj.ptr())->tp_name) +
                            " is not a buffer; pass a numpy array, a bytearray or another buffer");
    try {
      info = py::reinterpret_borrow<py::buffer>(obj).request(writable);
    } catch (py::error_already_set& e) {  // a read-only buffer asked to be writable: numpy says ValueError
      if (!e.matches(PyExc_BufferError) && !e.matches(PyExc_ValueError)) throw;
      const std::string why = py::str(e.value());
      throw py::value_error(what + (writable ? ": the kernel writes this buffer, but it is read-only (" + why +
                                                   "); pass a writable one"
                                             : ": " + why));
    }
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

// _C.run(call, threads) (bindings_run.cpp): `call` is a chatvec_fast.backends.call.KernelCall, or any
// object with its attribute names.
size_t py_run(const py::object& call, int threads);

// _C.block_sums(n, block, base, base_dtype, chat, chat_dtype, cp, cp_dtype, out) (bindings_block_sums.cpp).
void py_block_sums(int64_t n, int64_t block, const py::object& base, const std::string& base_dtype,
                   const py::object& chat, const std::string& chat_dtype, const py::object& cp,
                   const py::object& cp_dtype, const py::object& out);

}  // namespace chatvec
