// The general kernel call's binding (_C.run): parses operands, scales and the
// FP8 output's scale buffers, checks every size the kernel will touch, and
// runs the kernel without the GIL. Python (chatvec_fast/backends/call.py)
// validates everything else.
#include <algorithm>
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

ScaleLayout layout(int kind, size_t cols, size_t first_element, size_t block_rows, size_t block_cols,
                   const std::string& what) {
  if (kind < kTensorScale || kind > kBlockScale)
    throw py::value_error(what + ": unknown scale kind " + std::to_string(kind) +
                          " (expected 0 = tensor, 1 = row, 2 = block)");
  if (cols == 0 || block_rows == 0 || block_cols == 0)
    throw py::value_error(what + ": cols, block_rows and block_cols must be at least 1");
  ScaleLayout l;
  l.kind = static_cast<ScaleKind>(kind);
  l.cols = cols;
  l.first_element = first_element;
  l.block_rows = block_rows;
  l.block_cols = block_cols;
  checked_mul(block_rows, cols, what);
  return l;
}

// (buffer, dtype, scale or None), scale = (kind, buffer, cols, first_element, block_rows, block_cols, first_scale_row)
Input operand(const py::object& obj, size_t n, std::vector<Buffer>& keep, const std::string& what) {
  const auto t = obj.cast<py::tuple>();
  if (t.size() != 3) throw py::value_error(what + ": an operand is (buffer, dtype, scale or None)");
  Input in;
  in.dtype = to_dtype(t[1].cast<int>(), what);
  keep.emplace_back(t[0].cast<py::buffer>(), checked_mul(n, itemsize(in.dtype), what), false, what);
  in.data = keep.back().ptr();
  if (t[2].is_none()) return in;
  const auto s = t[2].cast<py::tuple>();
  if (s.size() != 7)
    throw py::value_error(what +
                          ": a scale is (kind, buffer, cols, first_element, block_rows, block_cols, first_scale_row)");
  in.scale = layout(s[0].cast<int>(), s[2].cast<size_t>(), s[3].cast<size_t>(), s[4].cast<size_t>(),
                    s[5].cast<size_t>(), what + " scale");
  in.scale.first_scale_row = s[6].cast<size_t>();
  const size_t need = scale_entries(in.scale, n, what + " scale");
  keep.emplace_back(s[1].cast<py::buffer>(), checked_mul(need, 4, what), false, what + " scale");
  in.scales = keep.back().ptr();
  return in;
}

}  // namespace

size_t py_run(int mode, size_t n, const py::object& base, const py::object& chat, const py::object& cp,
              const std::vector<py::object>& vectors, const std::vector<std::vector<double>>& alphas,
              const std::vector<py::buffer>& outs, int out_dtype, const py::object& out_scale, int threads) {
  if (mode < kMergeMode || mode > kConvertMode)
    throw py::value_error("unknown mode " + std::to_string(mode) + " (0 merge, 1 apply, 2 extract, 3 convert)");
  KernelCall call;
  call.mode = static_cast<Mode>(mode);
  call.n = n;
  call.out_dtype = to_out_dtype(out_dtype, "out");
  const size_t num_k = outs.size();
  if (num_k == 0) throw py::value_error("need at least one output buffer");
  const bool wants[3] = {mode == kMergeMode || mode == kExtractMode, mode == kMergeMode || mode == kExtractMode,
                         mode != kExtractMode};
  const py::object* given[3] = {&base, &chat, &cp};
  const char* names[3] = {"base", "chat", "cp"};
  Input* slots[3] = {&call.base, &call.chat, &call.cp};
  std::vector<Buffer> keep;
  keep.reserve(2 * (3 + vectors.size()) + 2 * num_k);
  for (int i = 0; i < 3; ++i) {
    if (given[i]->is_none() == wants[i])
      throw py::value_error(std::string(names[i]) + (wants[i] ? " is needed" : " must be None") + " in mode " +
                            std::to_string(mode) + " (0 merge: base, chat, cp; 1 apply: cp and vectors; " +
                            "2 extract: base, chat; 3 convert: cp)");
    if (wants[i]) *slots[i] = operand(*given[i], n, keep, names[i]);
  }
  const bool apply = mode == kApplyMode;
  if (apply ? (vectors.empty() || vectors.size() > kMaxVectors) : !vectors.empty())
    throw py::value_error("got " + std::to_string(vectors.size()) + " vectors; apply takes 1 to " +
                          std::to_string(kMaxVectors) + ", the other modes none");
  std::vector<Input> inputs;
  for (size_t m = 0; m < vectors.size(); ++m)
    inputs.push_back(operand(vectors[m], n, keep, "vectors[" + std::to_string(m) + "]"));
  call.vectors = inputs.data();
  call.num_vectors = static_cast<int>(inputs.size());
  if (mode == kExtractMode && (num_k != 1 || call.out_dtype == kF8E4M3))
    throw py::value_error("extract writes one output of F32, F16, BF16 or F64");
  std::vector<double> flat;
  if (mode == kMergeMode || apply) {
    const size_t per = apply ? inputs.size() : 1;
    if (alphas.size() != num_k)
      throw py::value_error("got " + std::to_string(alphas.size()) + " rows of alphas for " + std::to_string(num_k) +
                            " outputs; pass one row per output");
    for (const auto& row : alphas) {
      if (row.size() != per)
        throw py::value_error("an alphas row has " + std::to_string(row.size()) + " alphas; pass " +
                              std::to_string(per) + " (one per " + (apply ? "vector)" : "output)"));
      flat.insert(flat.end(), row.begin(), row.end());
    }
  }
  call.alphas = flat.data();
  std::vector<void*> out_ptrs, scale_ptrs;
  for (size_t k = 0; k < num_k; ++k) {
    const std::string what = "out[" + std::to_string(k) + "]";
    keep.emplace_back(outs[k], checked_mul(n, itemsize(call.out_dtype), what), true, what);
    out_ptrs.push_back(keep.back().ptr());
  }
  if (out_scale.is_none() != (call.out_dtype != kF8E4M3))
    throw py::value_error("an F8_E4M3 output needs an out_scale, and only it takes one");
  if (!out_scale.is_none()) {
    const auto t = out_scale.cast<py::tuple>();
    if (t.size() != 6)
      throw py::value_error("out_scale is (kind, buffers, cols, first_element, block_rows, block_cols)");
    auto& l = call.out_scale.layout;
    l = layout(t[0].cast<int>(), t[2].cast<size_t>(), t[3].cast<size_t>(), t[4].cast<size_t>(), t[5].cast<size_t>(),
               "out_scale");
    if (l.kind == kTensorScale) throw py::value_error("out_scale: kind must be 1 (row) or 2 (block)");
    const size_t unit = group_unit(l);
    if (l.first_element % unit != 0)
      throw py::value_error("out_scale: first_element " + std::to_string(l.first_element) +
                            " must start a row of groups (a multiple of " + std::to_string(unit) + ")");
    const size_t groups = checked_mul((n + unit - 1) / unit, l.blocks_per_row(), "out_scale");
    const auto buffers = t[1].cast<std::vector<py::buffer>>();
    if (buffers.size() != num_k)
      throw py::value_error("out_scale: " + std::to_string(buffers.size()) + " scale buffers for " +
                            std::to_string(num_k) + " outputs");
    for (size_t k = 0; k < num_k; ++k) {
      const std::string what = "out_scale buffer " + std::to_string(k);
      keep.emplace_back(buffers[k], checked_mul(groups, 4, what), true, what);
      scale_ptrs.push_back(keep.back().ptr());
    }
    call.out_scale.scales = scale_ptrs.data();
  }
  call.num_outputs = static_cast<int>(num_k);
  call.outs = out_ptrs.data();
  py::gil_scoped_release release;
  return run(call, threads);
}

}  // namespace chatvec
