"""The cuda backend: the CUDA C++ kernel (csrc/cuda/, the optional extension chatvec_fast._cuda).

One KernelCall at a time, on the current torch stream of the backend's device:

    operands not already on the device  host -> device (torch copies)
    the kernel                          _cuda.run(addresses, stream handle): 16-byte loads where it can
    outputs not already on the device   device -> host, then the extract count

The extension takes raw addresses and the stream's handle, so it links no libtorch; torch only allocates
and copies. There is no submit(): the calls are synchronous (the triton backend overlaps copies and kernels
across chunks; this one has not been measured on a GPU yet, docs/PERFORMANCE.md), and "auto" never picks it.

Without a GPU, CHATVEC_CUDA_HOST=1 runs the same element code (merge_element.cuh, compiled by nvcc as host
code) on the CPU, one thread, over the host buffers: how the tests check the kernel's arithmetic and this
module's packing of the call on machines without a GPU, as TRITON_INTERPRET=1 does for triton.
"""

from __future__ import annotations

import os

import numpy as np

from ..dtypes import KERNEL_CODES, itemsize
from ..kernel_codes import MAX_VECTORS, NO_SCALE
from .call import MODES, SCALE_KINDS, KernelCall, scale_entries, validate


def load_extension():
    """chatvec_fast._cuda, or a RuntimeError that says how to build it."""
    try:
        from .. import _cuda
    except ImportError as exc:
        raise RuntimeError(
            f"the cuda backend's extension chatvec_fast._cuda is not built ({exc}); reinstall where nvcc is "
            "found (CUDA_HOME or PATH), e.g. `CHATVEC_CUDA=1 pip install -e .`, or use --backend triton or native"
        ) from None
    return _cuda


def host_mode() -> bool:
    """CHATVEC_CUDA_HOST=1: the kernel's element code on the CPU (see the module docstring)."""
    return os.environ.get("CHATVEC_CUDA_HOST", "0") == "1"


class CudaBackend:
    name = "cuda"
    exact = True  # bit-identical to the float64 reference
    max_vectors = MAX_VECTORS

    def __init__(self, device: str | None = None, threads: int | None = None, gpu_memory: int | None = None):
        self._c = load_extension()
        self.device = None  # None: host mode
        if host_mode():
            return
        count, why = self._c.device_count()
        if count == 0:
            raise RuntimeError(f"--backend cuda: {why}; use --backend native, or set CHATVEC_CUDA_HOST=1 to run the "
                               "kernel's code on the CPU (one thread: for tests)")  # fmt: skip
        import torch

        self._torch = torch
        self.device = torch.device(device or "cuda")
        if self.device.type != "cuda":
            raise ValueError(f"--backend cuda computes on a CUDA device; got device {device!r} (e.g. 'cuda:0')")
        torch.cuda.set_device(self.device)

    def describe(self) -> str:
        if self.device is None:
            return "cuda (element code on the host: CHATVEC_CUDA_HOST=1)"
        return f"cuda ({self.device}: {self._torch.cuda.get_device_name(self.device)})"

    def compute(self, call: KernelCall) -> int:
        """Runs one KernelCall (backends/call.py); returns extract's count of inexact elements, else 0."""
        validate(call, MAX_VECTORS, "cuda")
        per = self._c.MAX_OUTPUTS
        count = 0
        if self.device is None:
            for first in range(0, len(call.outs), per):  # outputs are independent: launches of MAX_OUTPUTS
                count += self._run(batch(call, first, first + per))
            return count
        with self._torch.cuda.device(self.device):  # the runtime launches on the calling thread's device
            for first in range(0, len(call.outs), per):
                count += self._run(batch(call, first, first + per))
        return count

    def _run(self, call: KernelCall) -> int:
        if self.device is None:
            place = Host()
        else:
            place = Device(self._torch, self.device)
        n, k = call.n, len(call.outs)
        inputs = packed_inputs(call, place.input)
        out_bytes = n * itemsize(call.out_dtype)
        outs = [place.output(buf, out_bytes) for buf in call.outs]
        out_scale = None
        if call.out_scale is not None:
            o = call.out_scale
            groups = o.groups(n)
            scales = [place.output(buf, 4 * groups) for buf in o.buffers]
            block_rows, block_cols = (o.block_rows, o.block_cols) if o.kind == "block" else (1, o.cols)
            amax = place.scratch(8 * k * groups)
            out_scale = (SCALE_KINDS[o.kind], o.cols, block_rows, block_cols, groups, scales, amax)
        count = place.counter()
        alphas = [float(a) for row in call.alphas for a in row] if call.mode in ("merge", "apply") else []
        self._c.run(MODES[call.mode], n, inputs, alphas, outs, KERNEL_CODES[call.out_dtype], out_scale, count,
                    place.stream(), self.device is not None)  # fmt: skip
        return place.finish(call.mode == "extract")


def batch(call: KernelCall, first: int, stop: int) -> KernelCall:
    """Outputs first..stop-1 of a call, with their alphas and group-scale buffers."""
    if first == 0 and stop >= len(call.outs):
        return call
    o = call.out_scale
    if o is not None:
        o = type(o)(o.kind, o.buffers[first:stop], o.cols, o.first_element, o.block_rows, o.block_cols, o.rows)
    alphas = call.alphas[first:stop] if call.mode in ("merge", "apply") else call.alphas
    return KernelCall(call.n, call.mode, call.outs[first:stop], call.out_dtype, alphas, call.base, call.chat,
                      call.cp, call.vectors, o)  # fmt: skip


def packed_inputs(call: KernelCall, address) -> list:
    """base, chat, cp, then the vectors, as _cuda.run takes them: None, or (address, dtype code, scale kind,
    scales address, cols, first_element, block_rows, block_cols, first_scale_row). address(buffer, nbytes)
    gives where a buffer's first nbytes are for the kernel."""
    n = call.n
    named = [call.base, call.chat, call.cp, *call.vectors]
    packed = []
    for op in named:
        if op is None:
            packed.append(None)
            continue
        data = address(op.buffer, n * itemsize(op.dtype))
        s = op.scale
        if s is None:
            packed.append((data, KERNEL_CODES[op.dtype], NO_SCALE, 0, 1, 0, 1, 1, 0))
            continue
        scales = address(s.buffer, 4 * scale_entries(s, n))
        packed.append((data, KERNEL_CODES[op.dtype], SCALE_KINDS[s.kind], scales, s.cols, s.first_element,
                       s.block_rows, s.block_cols, s.first_scale_row))  # fmt: skip
    return packed


def _host_bytes(buf, nbytes: int) -> np.ndarray:
    return np.frombuffer(buf, dtype=np.uint8, count=nbytes)


class Host:
    """Host mode: the kernel reads and writes the host buffers where they are."""

    def __init__(self):
        self._keep = []
        self._count = np.zeros(1, np.uint64)

    def input(self, buf, nbytes: int) -> int:
        if hasattr(buf, "data_ptr"):  # a CPU torch tensor
            return buf.data_ptr() if nbytes else 0
        return _host_bytes(buf, nbytes).ctypes.data if nbytes else 0

    output = input

    def scratch(self, nbytes: int) -> int:
        self._keep.append(np.zeros(max(nbytes, 8), np.uint8))
        return self._keep[-1].ctypes.data

    def counter(self) -> int:
        return self._count.ctypes.data

    def stream(self) -> int:
        return 0

    def finish(self, counted: bool) -> int:
        return int(self._count[0]) if counted else 0


class Device:
    """Device mode: host buffers copied in and out on the device's current stream; device tensors used in place."""

    def __init__(self, torch, device):
        self.torch, self.device = torch, device
        self._keep = []  # device copies, alive until the kernel has run
        self._back = []  # (host buffer, device tensor) to copy back
        self._count = None

    def _resident(self, buf) -> bool:
        return isinstance(buf, self.torch.Tensor) and buf.device.type == "cuda"

    def input(self, buf, nbytes: int) -> int:
        if not nbytes:
            return 0
        if self._resident(buf):
            return buf.data_ptr()
        host = buf.reshape(-1).view(self.torch.uint8)[:nbytes] if hasattr(buf, "data_ptr") else None
        if host is None:
            host = self.torch.from_numpy(_host_bytes(buf, nbytes))
        dev = host.to(self.device)
        self._keep.append(dev)
        return dev.data_ptr()

    def output(self, buf, nbytes: int) -> int:
        if not nbytes:
            return 0
        if self._resident(buf):
            return buf.data_ptr()
        dev = self.torch.empty(nbytes, dtype=self.torch.uint8, device=self.device)
        self._back.append((buf, dev))
        return dev.data_ptr()

    def scratch(self, nbytes: int) -> int:
        self._keep.append(self.torch.empty(max(nbytes, 8), dtype=self.torch.uint8, device=self.device))
        return self._keep[-1].data_ptr()

    def counter(self) -> int:
        self._count = self.torch.zeros(1, dtype=self.torch.int64, device=self.device)
        return self._count.data_ptr()

    def stream(self) -> int:
        return self.torch.cuda.current_stream(self.device).cuda_stream

    def finish(self, counted: bool) -> int:
        for buf, dev in self._back:
            if hasattr(buf, "data_ptr"):
                buf.reshape(-1).view(self.torch.uint8)[: dev.numel()].copy_(dev)
            else:
                self.torch.from_numpy(np.frombuffer(buf, np.uint8, count=dev.numel())).copy_(dev)
        self.torch.cuda.current_stream(self.device).synchronize()  # device outputs, and the copies' sources
        return int(self._count[0].item()) if counted else 0
