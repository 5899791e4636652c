// Python bindings (module chatvec_fast._C). Python validates plans and calls;
// this layer only checks what keeps memory safe (bindings_run.cpp: names,
// buffer sizes, writability) and releases the GIL around the work.
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
  m.attr("DTYPE_CODES") = chatvec::code_table(chatvec::kDTypeNames);
  m.attr("MODE_CODES") = chatvec::code_table(chatvec::kModeNames);
  m.attr("SCALE_KIND_CODES") = chatvec::code_table(chatvec::kScaleKindNames);
  m.attr("NO_SCALE") = static_cast<int>(chatvec::kNoScale);
  m.attr("MAX_VECTORS") = chatvec::kMaxVectors;

  m.def("run", &chatvec::py_run, "call"_a, "threads"_a = 0,
        "Runs one kernel call: `call` is a chatvec_fast.backends.call.KernelCall (or any object with its\n"
        "attribute names: mode, n, base, chat, cp, vectors, alphas, outs, out_dtype, out_scale; an Operand's\n"
        "buffer, dtype, scale; a Scale's kind, buffer, cols, first_element, block_rows, block_cols,\n"
        "first_scale_row; an OutScale's kind, buffers, cols, first_element, block_rows, block_cols), dtypes,\n"
        "modes and scale kinds by name (DTYPE_CODES, MODE_CODES, SCALE_KIND_CODES). Checks every buffer the\n"
        "kernel touches, releases the GIL, and returns extract's count of inexact elements (else 0).");
  m.def("block_sums", &chatvec::py_block_sums, "n"_a, "block"_a, "base"_a, "base_dtype"_a, "chat"_a,
        "chat_dtype"_a, "cp"_a, "cp_dtype"_a, "out"_a,
        "chatvec inspect's sums of n elements in blocks of `block` (csrc/block_sums.h): into out (float64,\n"
        "ceil(n / block) rows of 4 sums with cp, 2 without: cp=None), from buffers of F32, F16, BF16 or F64.");
  m.def("active_isa", &chatvec::active_isa, "Instruction set the kernel runs with.");
  m.def("supported_isas", &chatvec::supported_isas, "Instruction sets this build and CPU support, best first.");
  m.def("set_isa", &chatvec::set_isa, "name"_a, "Forces an instruction set from supported_isas().");
  m.def("available_cpus", &chatvec::available_cpus, "CPUs this process may run on.");
  m.def("start_writeback", &writeback_call<chatvec::start_writeback>, "fd"_a, "offset"_a, "nbytes"_a,
        "Starts write-back of a written file range (Linux; elsewhere a no-op).");
  m.def("wait_writeback", &writeback_call<chatvec::wait_writeback>, "fd"_a, "offset"_a, "nbytes"_a,
        "Waits for write-back of a file range (Linux; elsewhere a no-op).");
}
