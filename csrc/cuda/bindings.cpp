// Python bindings of the CUDA kernel (module chatvec_fast._cuda). The Python
// side (chatvec_fast/backends/cuda.py) validates the call against the one
// contract and passes raw addresses: device pointers and the current stream's
// handle from torch, so neither torch nor its C++ ABI is a build dependency.
// This layer checks the shapes of what it is given and nothing it cannot see
// (buffer sizes: validate() in backends/call.py).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "device_call.h"

namespace py = pybind11;
using chatvec::cuda::DeviceCall;
using chatvec::cuda::DeviceInput;

namespace {

void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument("chatvec_fast._cuda.run: " + message);
}

template <typename T>
T* pointer(uint64_t address) {
  return reinterpret_cast<T*>(static_cast<uintptr_t>(address));
}

// (address, dtype, scale_kind, scales address, cols, first_element, block_rows, block_cols, first_scale_row)
DeviceInput input(const py::handle& spec, uint64_t n, const char* what) {
  DeviceInput in{};
  in.scale_kind = chatvec::kNoScale;
  if (spec.is_none()) return in;
  const auto t = spec.cast<py::tuple>();
  require(t.size() == 9, std::string(what) + ": expected a 9-tuple (address, dtype, scale_kind, scales, cols, "
                                             "first_element, block_rows, block_cols, first_scale_row)");
  in.data = pointer<const void>(t[0].cast<uint64_t>());
  in.dtype = t[1].cast<int>();
  in.scale_kind = t[2].cast<int>();
  in.scales = pointer<const float>(t[3].cast<uint64_t>());
  in.cols = t[4].cast<uint64_t>();
  in.first_element = t[5].cast<uint64_t>();
  in.block_rows = t[6].cast<uint64_t>();
  in.block_cols = t[7].cast<uint64_t>();
  in.first_scale_row = t[8].cast<uint64_t>();
  require(in.dtype >= chatvec::kF32 && in.dtype <= chatvec::kF8E5M2, std::string(what) + ": unknown dtype code");
  require(in.scale_kind >= chatvec::kNoScale && in.scale_kind <= chatvec::kBlockScale,
          std::string(what) + ": unknown scale kind");
  require(n == 0 || in.data != nullptr, std::string(what) + ": null address");
  require(in.scale_kind == chatvec::kNoScale || (in.scales != nullptr && in.cols && in.block_rows && in.block_cols),
          std::string(what) + ": a scaled operand needs scales and cols, block_rows, block_cols >= 1");
  return in;
}

void run(int mode, uint64_t n, const py::list& inputs, const std::vector<double>& alphas,
         const std::vector<uint64_t>& outs, int out_dtype, const py::object& out_scale, uint64_t count,
         uint64_t stream, bool on_device) {
  DeviceCall c{};
  require(mode >= chatvec::kMergeMode && mode <= chatvec::kConvertMode, "unknown mode code");
  c.mode = mode;
  c.n = n;
  require(inputs.size() >= 3 && inputs.size() <= 3 + chatvec::kMaxVectors,
          "inputs: base, chat, cp, then up to " + std::to_string(chatvec::kMaxVectors) + " vectors");
  c.base = input(inputs[0], n, "base");
  c.chat = input(inputs[1], n, "chat");
  c.cp = input(inputs[2], n, "cp");
  c.num_vectors = static_cast<int>(inputs.size()) - 3;
  for (int m = 0; m < c.num_vectors; ++m) c.vectors[m] = input(inputs[3 + m], n, "vector");
  require(!outs.empty() && outs.size() <= chatvec::cuda::kMaxOutputs,
          "outs: 1 to " + std::to_string(chatvec::cuda::kMaxOutputs) + " outputs a launch");
  c.num_outputs = static_cast<int>(outs.size());
  for (int k = 0; k < c.num_outputs; ++k) {
    c.outs[k] = pointer<void>(outs[k]);
    require(n == 0 || c.outs[k] != nullptr, "outs: null address");
  }
  const size_t per = mode == chatvec::kApplyMode ? static_cast<size_t>(c.num_vectors) : 1;
  const bool takes_alphas = mode == chatvec::kMergeMode || mode == chatvec::kApplyMode;
  require(!takes_alphas || alphas.size() == outs.size() * per, "alphas: need one row of " + std::to_string(per) +
                                                                   " per output, row-major");
  for (size_t j = 0; j < alphas.size() && j < sizeof(c.alphas) / sizeof(double); ++j) c.alphas[j] = alphas[j];
  require(out_dtype >= chatvec::kF32 && out_dtype <= chatvec::kF8E4M3, "out_dtype: not an output dtype code");
  c.out_dtype = out_dtype;
  c.out_scale_kind = chatvec::kNoScale;
  require(out_scale.is_none() == (out_dtype != chatvec::kF8E4M3), "an F8_E4M3 output needs out_scale, only it");
  if (!out_scale.is_none()) {
    // (kind, cols, block_rows, block_cols, groups, [scales addresses], amax address)
    const auto t = out_scale.cast<py::tuple>();
    require(t.size() == 7, "out_scale: expected (kind, cols, block_rows, block_cols, groups, scales, amax)");
    c.out_scale_kind = t[0].cast<int>();
    c.out_cols = t[1].cast<uint64_t>();
    c.out_block_rows = t[2].cast<uint64_t>();
    c.out_block_cols = t[3].cast<uint64_t>();
    c.groups = t[4].cast<uint64_t>();
    const auto scales = t[5].cast<std::vector<uint64_t>>();
    c.amax = pointer<uint64_t>(t[6].cast<uint64_t>());
    require(c.out_scale_kind == chatvec::kRowScale || c.out_scale_kind == chatvec::kBlockScale,
            "out_scale: kind must be row or block");
    require(c.out_cols && c.out_block_rows && c.out_block_cols, "out_scale: cols and blocks must be >= 1");
    require(scales.size() == outs.size(), "out_scale: one scales address per output");
    require(n == 0 || c.amax != nullptr, "out_scale: null amax workspace");
    for (size_t k = 0; k < scales.size(); ++k) c.out_scales[k] = pointer<float>(scales[k]);
  }
  c.count = pointer<unsigned long long>(count);
  require(mode != chatvec::kExtractMode || n == 0 || c.count != nullptr, "extract needs a count address");
  std::string error;
  {
    py::gil_scoped_release release;
    if (on_device) {
      error = chatvec::cuda::launch(c, pointer<void>(stream));
    } else {
      chatvec::cuda::run_host(c);
    }
  }
  if (!error.empty()) throw std::runtime_error("chatvec_fast._cuda: " + error);
}

}  // namespace

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "The CUDA kernel (csrc/cuda/), raw addresses in; see chatvec_fast/backends/cuda.py.";
  m.def("run", &run, py::arg("mode"), py::arg("n"), py::arg("inputs"), py::arg("alphas"), py::arg("outs"),
        py::arg("out_dtype"), py::arg("out_scale"), py::arg("count"), py::arg("stream"), py::arg("on_device"),
        "Enqueues one call on `stream` (on_device) or runs the same element code on the host over host addresses.");
  m.def(
      "device_count",
      []() {
        std::string error;
        const int count = chatvec::cuda::device_count(&error);
        return py::make_tuple(count, error);
      },
      "(CUDA devices visible, the reason when there are none).");
  m.def("runtime_version", &chatvec::cuda::runtime_version);
  m.def("driver_version", &chatvec::cuda::driver_version);
  m.attr("MAX_OUTPUTS") = chatvec::cuda::kMaxOutputs;
}
