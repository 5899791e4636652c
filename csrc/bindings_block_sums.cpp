// _C.block_sums: the sums of chatvec inspect (block_sums.h) over buffers Python owns. Checks every buffer's size
// against n and its dtype, and releases the GIL (inspect's --threads sums several tensors at once).
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "bindings.h"
#include "block_sums.h"

namespace chatvec {

namespace {

DType sums_dtype(const std::string& name, const std::string& what) {
  for (const auto& d : kDTypeNames)
    if (name == d.name && !is_fp8(static_cast<DType>(d.code))) return static_cast<DType>(d.code);
  throw py::value_error(what + ": dtype '" + name + "'; expected F32, F16, BF16 or F64 (widen FP8 to F64 first)");
}

}  // namespace

void py_block_sums(int64_t n, int64_t block, const py::object& base, const std::string& base_dtype,
                   const py::object& chat, const std::string& chat_dtype, const py::object& cp,
                   const py::object& cp_dtype, const py::object& out) {
  if (n < 0 || block < 1) throw py::value_error("block_sums: n must be >= 0 and block >= 1");
  const bool with_cp = !cp.is_none();
  const int64_t rows = (n + block - 1) / block, sums = with_cp ? 4 : 2;
  const SumsInput none{};
  SumsInput in[3] = {none, none, none};
  const py::object* objects[3] = {&base, &chat, &cp};
  const std::string names[3] = {"base", "chat", "cp"};
  const std::string dtypes[3] = {base_dtype, chat_dtype, with_cp ? cp_dtype.cast<std::string>() : "F64"};
  std::vector<Buffer> keep;
  keep.reserve(4);
  for (int r = 0; r < (with_cp ? 3 : 2); ++r) {
    in[r].dtype = sums_dtype(dtypes[r], names[r]);
    keep.emplace_back(*objects[r], static_cast<size_t>(n) * itemsize(in[r].dtype), false, names[r]);
    in[r].data = keep.back().ptr();
  }
  keep.emplace_back(out, static_cast<size_t>(rows * sums) * sizeof(double), true, "out");
  double* result = static_cast<double*>(keep.back().ptr());
  py::gil_scoped_release release;
  block_sums(in[0], in[1], in[2], n, block, result);
}

}  // namespace chatvec
