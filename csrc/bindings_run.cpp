// _C.run(call, threads): the kernel's one entry point. `call` is the Python
// KernelCall (chatvec_fast/backends/call.py), read here by attribute name:
// mode, n, base/chat/cp (None or an Operand: buffer, dtype, scale), vectors,
// alphas, outs, out_dtype, out_scale. Names ("BF16", "merge", "block") become
// codes through the tables of bindings.h. Python's validate() checks the call
// and names the fix; this file checks everything that keeps the kernel inside
// the memory it is given (buffer sizes from n, dtypes, scale geometry and
// group counts, all overflow-checked; writability; contiguity; the operands a
// mode reads), whatever a caller passes, then runs without the GIL.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "bindings.h"

namespace chatvec {

namespace {

size_t checked_mul(size_t a, size_t b, const std::string& what) {
  size_t r;
  if (__builtin_mul_overflow(a, b, &r)) throw py::value_error(what + ": sizes overflow");
  return r;
}

size_t checked_add(size_t a, size_t b, const std::string& what) {
  size_t r;
  if (__builtin_add_overflow(a, b, &r)) throw py::value_error(what + ": sizes overflow");
  return r;
}

std::string type_name(const py::handle& v) { return Py_TYPE(v.ptr())->tp_name; }

// An attribute name, interned once (under the GIL) and kept for the process:
// every call reads about 20 of them.
struct Field {
  const char* text;
  PyObject* name;
};
Field kMode{"mode", nullptr}, kN{"n", nullptr}, kBase{"base", nullptr}, kChat{"chat", nullptr},
    kCp{"cp", nullptr}, kVectors{"vectors", nullptr}, kAlphas{"alphas", nullptr}, kOuts{"outs", nullptr},
    kOutDtype{"out_dtype", nullptr}, kOutScale{"out_scale", nullptr}, kBuffer{"buffer", nullptr},
    kDtype{"dtype", nullptr}, kScale{"scale", nullptr}, kKind{"kind", nullptr}, kCols{"cols", nullptr},
    kFirstElement{"first_element", nullptr}, kBlockRows{"block_rows", nullptr}, kBlockCols{"block_cols", nullptr},
    kFirstScaleRow{"first_scale_row", nullptr}, kBuffers{"buffers", nullptr};

// obj.<field>, or a ValueError naming where it is missing.
py::object get(const py::handle& obj, Field& f, const std::string& where) {
  if (f.name == nullptr && (f.name = PyUnicode_InternFromString(f.text)) == nullptr) throw py::error_already_set();
  PyObject* value = PyObject_GetAttr(obj.ptr(), f.name);
  if (value == nullptr) {
    PyErr_Clear();
    throw py::value_error(where + ": a " + type_name(obj) + " has no attribute '" + f.text +
                          "'; pass a chatvec_fast.backends.call.KernelCall (Operand, Scale, OutScale)");
  }
  return py::reinterpret_steal<py::object>(value);
}

// An integer >= 0 (anything with __index__).
size_t to_size(const py::handle& v, const std::string& what) {
  PyObject* index = PyNumber_Index(v.ptr());
  unsigned long long x = index ? PyLong_AsUnsignedLongLong(index) : static_cast<unsigned long long>(-1);
  Py_XDECREF(index);
  if (x == static_cast<unsigned long long>(-1) && PyErr_Occurred()) {
    PyErr_Clear();
    throw py::value_error(what + ": expected an integer >= 0, got " + std::string(py::repr(v)));
  }
  return static_cast<size_t>(x);
}

double to_double(const py::handle& v, const std::string& what) {
  const double x = PyFloat_AsDouble(v.ptr());
  if (x == -1.0 && PyErr_Occurred()) {
    PyErr_Clear();
    throw py::value_error(what + ": expected a number, got " + std::string(py::repr(v)));
  }
  return x;
}

py::sequence to_sequence(const py::handle& v, const std::string& what) {
  if (!PySequence_Check(v.ptr()) || PyUnicode_Check(v.ptr()))
    throw py::value_error(what + ": expected a list or tuple, got a " + type_name(v));
  return py::reinterpret_borrow<py::sequence>(v);
}

// The code of a name in one of bindings.h's tables.
template <size_t N>
int code_of(const NamedCode (&names)[N], const py::handle& v, const std::string& what) {
  const char* text = PyUnicode_Check(v.ptr()) ? PyUnicode_AsUTF8(v.ptr()) : nullptr;
  if (text != nullptr)
    for (const auto& n : names)
      if (std::strcmp(n.name, text) == 0) return n.code;
  PyErr_Clear();
  std::string expected;
  for (const auto& n : names) expected += std::string(expected.empty() ? "" : ", ") + n.name;
  throw py::value_error(what + ": " + std::string(py::repr(v)) + ", expected one of " + expected);
}

template <size_t N>
const char* name_of(const NamedCode (&names)[N], int code) {
  for (const auto& n : names)
    if (n.code == code) return n.name;
  return "?";
}

// Scale values the n elements of a chunk read: one past the largest index
// (chatvec_fast/backends/call.py scale_entries() computes the same).
size_t scale_entries(const ScaleLayout& l, size_t n, const std::string& what) {
  if (n == 0) return 0;
  if (l.kind == kTensorScale) return 1;
  const size_t last = checked_add(l.first_element, n - 1, what);
  const size_t first_row = l.first_element / l.cols, last_row = last / l.cols;
  if (l.kind == kRowScale) {
    if (first_row < l.first_scale_row)
      throw py::value_error(what + ": the chunk starts at row " + std::to_string(first_row) +
                            ", before first_scale_row " + std::to_string(l.first_scale_row));
    return last_row - l.first_scale_row + 1;
  }
  if (first_row / l.block_rows < l.first_scale_row)
    throw py::value_error(what + ": the chunk starts in block-row " + std::to_string(first_row / l.block_rows) +
                          ", before first_scale_row " + std::to_string(l.first_scale_row));
  const size_t last_block_row = last_row / l.block_rows;
  const size_t start = std::max(l.first_element, last_block_row * l.block_rows * l.cols);
  const size_t max_block_col = start / l.cols != last_row ? l.blocks_per_row() - 1 : (last % l.cols) / l.block_cols;
  return checked_mul(last_block_row - l.first_scale_row, l.blocks_per_row(), what) + max_block_col + 1;
}

// A Scale or an OutScale's kind and geometry.
ScaleLayout layout(const py::handle& s, const std::string& what) {
  ScaleLayout l;
  l.kind = static_cast<ScaleKind>(code_of(kScaleKindNames, get(s, kKind, what), what + ".kind"));
  l.cols = to_size(get(s, kCols, what), what + ".cols");
  l.first_element = to_size(get(s, kFirstElement, what), what + ".first_element");
  l.block_rows = to_size(get(s, kBlockRows, what), what + ".block_rows");
  l.block_cols = to_size(get(s, kBlockCols, what), what + ".block_cols");
  if (l.cols == 0 || l.block_rows == 0 || l.block_cols == 0)
    throw py::value_error(what + ": cols, block_rows and block_cols must be at least 1");
  checked_mul(l.block_rows, l.cols, what);
  return l;
}

// An Operand: buffer (n elements of dtype), dtype, scale (None, or a Scale for an FP8 operand).
Input operand(const py::handle& op, size_t n, std::vector<Buffer>& keep, const std::string& what) {
  Input in;
  in.dtype = static_cast<DType>(code_of(kDTypeNames, get(op, kDtype, what), what + ".dtype"));
  const std::string buffer = what + ".buffer";
  keep.emplace_back(get(op, kBuffer, what), checked_mul(n, itemsize(in.dtype), buffer), false, buffer);
  in.data = keep.back().ptr();
  const py::object s = get(op, kScale, what);
  if (s.is_none()) return in;
  const std::string where = what + ".scale";
  if (!is_fp8(in.dtype))
    throw py::value_error(where + ": only FP8 operands take a scale, this one is " + name_of(kDTypeNames, in.dtype));
  in.scale = layout(s, where);
  in.scale.first_scale_row = to_size(get(s, kFirstScaleRow, where), where + ".first_scale_row");
  const size_t need = scale_entries(in.scale, n, where);
  keep.emplace_back(get(s, kBuffer, where), checked_mul(need, 4, where), false, where + ".buffer");
  in.scales = keep.back().ptr();
  return in;
}

const char* const kModeOperands = "(merge: base, chat, cp; apply: cp and vectors; extract: base, chat; convert: cp)";

}  // namespace

size_t py_run(const py::object& call, int threads) {
  KernelCall c;
  c.mode = static_cast<Mode>(code_of(kModeNames, get(call, kMode, "call"), "call.mode"));
  const std::string mode = name_of(kModeNames, c.mode);
  c.n = to_size(get(call, kN, "call"), "call.n");
  c.out_dtype = static_cast<DType>(code_of(kDTypeNames, get(call, kOutDtype, "call"), "call.out_dtype"));
  if (c.out_dtype == kF8E5M2) throw py::value_error("call.out_dtype: F8_E5M2 is not an output dtype (F8_E4M3 is)");
  const py::sequence outs = to_sequence(get(call, kOuts, "call"), "call.outs");
  const size_t num_k = outs.size();
  if (num_k == 0) throw py::value_error("call.outs: empty; pass one output buffer per output");
  const py::sequence vectors = to_sequence(get(call, kVectors, "call"), "call.vectors");
  const size_t num_m = vectors.size();
  std::vector<Buffer> keep;
  keep.reserve(2 * (3 + num_m) + 2 * num_k);

  const bool reads[3] = {c.mode == kMergeMode || c.mode == kExtractMode, c.mode == kMergeMode || c.mode == kExtractMode,
                         c.mode != kExtractMode};
  Field* fields[3] = {&kBase, &kChat, &kCp};
  Input* slots[3] = {&c.base, &c.chat, &c.cp};
  for (int i = 0; i < 3; ++i) {
    const std::string what = std::string("call.") + fields[i]->text;
    const py::object op = get(call, *fields[i], "call");
    if (op.is_none() == reads[i])
      throw py::value_error(what + (reads[i] ? " is needed" : " must be None") + " in mode '" + mode + "' " +
                            kModeOperands);
    if (reads[i]) *slots[i] = operand(op, c.n, keep, what);
  }
  const bool apply = c.mode == kApplyMode;
  if (apply ? (num_m == 0 || num_m > static_cast<size_t>(kMaxVectors)) : num_m != 0)
    throw py::value_error("call.vectors: " + std::to_string(num_m) + " vectors; apply takes 1 to " +
                          std::to_string(kMaxVectors) + ", the other modes none");
  std::vector<Input> inputs;
  inputs.reserve(num_m);
  for (size_t m = 0; m < num_m; ++m)
    inputs.push_back(operand(vectors[m], c.n, keep, "call.vectors[" + std::to_string(m) + "]"));
  c.vectors = inputs.data();
  c.num_vectors = static_cast<int>(num_m);
  if (c.mode == kExtractMode && (num_k != 1 || c.out_dtype == kF8E4M3))
    throw py::value_error("call.outs: extract writes one output of F32, F16, BF16 or F64");

  std::vector<double> flat;  // merge: K alphas; apply: K x M, row-major
  if (c.mode == kMergeMode || apply) {
    const size_t per = apply ? num_m : 1;
    const py::sequence rows = to_sequence(get(call, kAlphas, "call"), "call.alphas");
    if (rows.size() != num_k)
      throw py::value_error("call.alphas: " + std::to_string(rows.size()) + " rows for " + std::to_string(num_k) +
                            " outputs; pass one row per output");
    flat.reserve(checked_mul(num_k, per, "call.alphas"));
    for (size_t k = 0; k < num_k; ++k) {
      const std::string what = "call.alphas[" + std::to_string(k) + "]";
      const py::sequence row = to_sequence(rows[k], what);
      if (row.size() != per)
        throw py::value_error(what + ": " + std::to_string(row.size()) + " alphas; pass " + std::to_string(per) +
                              (apply ? " (one per vector)" : " (merge takes one per output)"));
      for (size_t m = 0; m < per; ++m) flat.push_back(to_double(row[m], what + "[" + std::to_string(m) + "]"));
    }
  }
  c.alphas = flat.data();

  std::vector<void*> out_ptrs, scale_ptrs;
  for (size_t k = 0; k < num_k; ++k) {
    const std::string what = "call.outs[" + std::to_string(k) + "]";
    keep.emplace_back(outs[k], checked_mul(c.n, itemsize(c.out_dtype), what), true, what);
    out_ptrs.push_back(keep.back().ptr());
  }
  const py::object out_scale = get(call, kOutScale, "call");
  if (out_scale.is_none() != (c.out_dtype != kF8E4M3))
    throw py::value_error("call.out_scale: an F8_E4M3 output needs an out_scale, and only it takes one");
  if (!out_scale.is_none()) {
    auto& l = c.out_scale.layout;
    l = layout(out_scale, "call.out_scale");
    if (l.kind == kTensorScale) throw py::value_error("call.out_scale.kind: 'tensor', expected 'row' or 'block'");
    const size_t unit = group_unit(l);
    if (l.first_element % unit != 0)
      throw py::value_error("call.out_scale.first_element: " + std::to_string(l.first_element) +
                            " must start a row of groups (a multiple of " + std::to_string(unit) + ")");
    const size_t groups = checked_mul((c.n + unit - 1) / unit, l.blocks_per_row(), "call.out_scale");
    const py::sequence buffers = to_sequence(get(out_scale, kBuffers, "call.out_scale"), "call.out_scale.buffers");
    if (buffers.size() != num_k)
      throw py::value_error("call.out_scale.buffers: " + std::to_string(buffers.size()) + " scale buffers for " +
                            std::to_string(num_k) + " outputs; pass one per output");
    for (size_t k = 0; k < num_k; ++k) {
      const std::string what = "call.out_scale.buffers[" + std::to_string(k) + "]";
      keep.emplace_back(buffers[k], checked_mul(groups, 4, what), true, what);
      scale_ptrs.push_back(keep.back().ptr());
    }
    c.out_scale.scales = scale_ptrs.data();
  }
  c.num_outputs = static_cast<int>(num_k);
  c.outs = out_ptrs.data();
  py::gil_scoped_release release;
  return run(c, threads);
}

}  // namespace chatvec
