// Python bindings (module chatvec_fast._C). Python validates plans; this layer
// only checks what keeps memory safe (dtype codes, buffer sizes, writability)
// and releases the GIL around the work.
#include "bindings.h"

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "file_io.h"
#include "merge_kernel.h"
#include "thread_pool.h"

namespace py = pybind11;
using namespace pybind11::literals;

namespace {

using chatvec::Buffer;
using chatvec::to_dtype;
using chatvec::to_out_dtype;

size_t py_merge(const py::object& base, int base_dtype, const py::object& chat, int chat_dtype, const py::object& cp,
                int cp_dtype, size_t n, const std::vector<double>& alphas, const std::vector<py::buffer>& outs,
                int out_dtype, int threads) {
  chatvec::MergeArgs args;
  args.n = n;
  args.out_dtype = to_out_dtype(out_dtype, "out");
  if (outs.empty()) throw py::value_error("need at least one output buffer");
  std::vector<Buffer> keep;
  keep.reserve(outs.size() + 3);
  auto input = [&](const py::object& obj, int code, const char* what, const void** ptr, chatvec::DType* dtype) {
    if (obj.is_none()) return;
    *dtype = to_dtype(code, what);
    keep.emplace_back(obj.cast<py::buffer>(), n * chatvec::itemsize(*dtype), false, what);
    *ptr = keep.back().ptr();
  };
  if (args.out_dtype == chatvec::kF8E4M3)
    throw py::value_error("out: an F8_E4M3 output needs its group scales; call run() with an out_scale");
  input(base, base_dtype, "base", &args.base, &args.base_dtype);
  input(chat, chat_dtype, "chat", &args.chat, &args.chat_dtype);
  input(cp, cp_dtype, "cp", &args.cp, &args.cp_dtype);
  args.num_outputs = static_cast<int>(outs.size());
  if (!chatvec::valid_mode(args))
    throw py::value_error(
        "inputs must be (base, chat, cp) to merge, (chat, cp) to apply a vector, (base, chat) with one output "
        "to extract one, or (cp) to convert");
  const bool scaled = args.chat != nullptr && args.cp != nullptr;
  if (scaled && alphas.size() != outs.size())
    throw py::value_error("got " + std::to_string(alphas.size()) + " alphas for " + std::to_string(outs.size()) +
                          " output buffers; pass one alpha per output");
  std::vector<void*> out_ptrs;
  for (size_t k = 0; k < outs.size(); ++k) {
    keep.emplace_back(outs[k], n * chatvec::itemsize(args.out_dtype), true, "out[" + std::to_string(k) + "]");
    out_ptrs.push_back(keep.back().ptr());
  }
  args.outs = out_ptrs.data();
  args.alphas = alphas.data();
  py::gil_scoped_release release;
  return chatvec::merge(args, threads);
}

void check_errno(int err) {
  if (err == 0) return;
  errno = err;
  PyErr_SetFromErrno(PyExc_OSError);
  throw py::error_already_set();
}

// Calls a file_io.h function without the GIL; an errno becomes OSError.
template <int (*fn)(int, int64_t, int64_t)>
void writeback_call(int fd, int64_t offset, int64_t nbytes) {
  int err;
  {
    py::gil_scoped_release release;
    err = fn(fd, offset, nbytes);
  }
  check_errno(err);
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "chatvec-fast native kernels: the fused float64 merge and write-back control.";
  m.attr("F32") = static_cast<int>(chatvec::kF32);
  m.attr("F16") = static_cast<int>(chatvec::kF16);
  m.attr("BF16") = static_cast<int>(chatvec::kBF16);
  m.attr("F64") = static_cast<int>(chatvec::kF64);
  m.attr("F8_E4M3") = static_cast<int>(chatvec::kF8E4M3);
  m.attr("F8_E5M2") = static_cast<int>(chatvec::kF8E5M2);
  m.attr("MAX_VECTORS") = chatvec::kMaxVectors;
  m.attr("DTYPE_CODES") = chatvec::code_table(chatvec::kDTypeNames);
  m.attr("MODE_CODES") = chatvec::code_table(chatvec::kModeNames);
  m.attr("SCALE_KIND_CODES") = chatvec::code_table(chatvec::kScaleKindNames);
  m.attr("NO_SCALE") = static_cast<int>(chatvec::kNoScale);

  m.def("merge", &py_merge, "base"_a, "base_dtype"_a, "chat"_a, "chat_dtype"_a, "cp"_a, "cp_dtype"_a, "n"_a, "alphas"_a,
        "outs"_a, "out_dtype"_a, "threads"_a = 0,
        "outs[k][:n] = round(cp + alphas[k] * (chat - base)) in float64, rounded once to out_dtype.\n"
        "base None: chat is a saved vector, outs[k] = round(cp + alphas[k] * chat). cp None: outs[0] =\n"
        "round(chat - base); returns how many elements out_dtype could not hold exactly. base and chat\n"
        "None: outs[k] = round(cp). FP8 inputs are read with scale 1. Releases the GIL.");
  m.def("run", &chatvec::py_run, "mode"_a, "n"_a, "base"_a, "chat"_a, "cp"_a, "vectors"_a, "alphas"_a, "outs"_a,
        "out_dtype"_a, "out_scale"_a = py::none(), "threads"_a = 0,
        "The general kernel call (chatvec_fast/backends/call.py): mode 0 merge, 1 apply, 2 extract, 3 convert.\n"
        "An operand is (buffer, dtype, scale or None); a scale is (kind, buffer, cols, first_element,\n"
        "block_rows, block_cols, first_scale_row) with kind 0 tensor, 1 row, 2 block; out_scale is (kind,\n"
        "buffers, cols, first_element, block_rows, block_cols) for an F8_E4M3 output. alphas: K rows (merge:\n"
        "one alpha each; apply: one per vector). Returns extract's inexact count. Releases the GIL.");
  m.def("active_isa", &chatvec::active_isa, "Instruction set the kernel runs with.");
  m.def("supported_isas", &chatvec::supported_isas, "Instruction sets this build and CPU support, best first.");
  m.def("set_isa", &chatvec::set_isa, "name"_a, "Forces an instruction set from supported_isas().");
  m.def("available_cpus", &chatvec::available_cpus, "CPUs this process may run on.");
  m.def("start_writeback", &writeback_call<chatvec::start_writeback>, "fd"_a, "offset"_a, "nbytes"_a,
        "Starts write-back of a written file range (Linux; elsewhere a no-op).");
  m.def("wait_writeback", &writeback_call<chatvec::wait_writeback>, "fd"_a, "offset"_a, "nbytes"_a,
        "Waits for write-back of a file range (Linux; elsewhere a no-op).");
}
