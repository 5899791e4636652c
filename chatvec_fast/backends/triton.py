"""The triton backend: the Triton kernel on a CUDA device, fed and drained asynchronously.

Per chunk, on a ring of device buffer sets (at most --gpu-memory in all):

    h2d stream      inputs: pinned host slot -> device
    compute stream  the kernel, after the inputs' event
    d2h stream      outputs: device -> pinned host slot, after the kernel's event

submit() returns at once with the chunk's last event; the pipeline's writers
wait on it before writing. Disk reads (reader thread), H2D, the kernel, D2H
and disk writes (writer threads) therefore overlap across chunks, and a tensor
larger than a buffer set streams through chunk by chunk.

Buffers that are already torch tensors on the backend's device (chatvec_fast.memory's held inputs, a model's
parameters) are used where they are: no copy in, and an output there gets no copy back to the host.

Without CUDA but with TRITON_INTERPRET=1 the same code runs with the CPU
standing in for the device: streams and events become no-ops and the kernel
runs in triton's interpreter (slowly), which is how the tests cover it.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from ..dtypes import KERNEL_CODES, itemsize
from ..kernel_codes import MAX_TRITON_VECTORS, NO_SCALE
from .call import SCALE_KINDS, KernelCall, operands, scale_entries, validate
from .triton_device import DeviceSet, Now, Pending

DEFAULT_GPU_MEMORY = 2 << 30  # 2 GiB: three buffer sets of (3 + K) x 4 MiB fit many times over
MAX_SETS = 3  # triple buffering: one set in H2D, one in the kernel, one in D2H


class TritonBackend:
    name = "triton"
    exact = True
    max_vectors = MAX_TRITON_VECTORS

    def __init__(self, device: str | None = None, threads: int | None = None, gpu_memory: int | None = None):
        try:
            from ..kernels import launch
        except ImportError as exc:
            raise RuntimeError(
                f"the triton backend needs triton ({exc}); install it with `pip install 'chatvec-fast[gpu]'`"
            ) from None
        self._k = launch
        interpreting = os.environ.get("TRITON_INTERPRET", "0") == "1"
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if self.device.type == "cuda":
            if not torch.cuda.is_available():
                raise RuntimeError(f"--backend triton on {device}: CUDA is not available here")
            torch.cuda.set_device(self.device)
            self._h2d, self._compute, self._d2h = (torch.cuda.Stream(self.device) for _ in range(3))
            self._pin = True
        elif interpreting:
            self._h2d = self._compute = self._d2h = Now()
            self._pin = False
        else:
            raise RuntimeError(
                "--backend triton needs a CUDA device; set TRITON_INTERPRET=1 to run the kernel on the CPU "
                "(for tests: it is very slow), or use --backend native"
            )
        self.gpu_memory = gpu_memory or DEFAULT_GPU_MEMORY
        self._sets: list[DeviceSet] = []
        self._set_bytes = self._set_outputs = self._next = 0
        self._host_arena: torch.Tensor | None = None
        self._arena_base = 0

    def describe(self) -> str:
        where = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "CPU, triton interpreter"
        return f"triton ({self.device}: {where}, {len(self._sets) or MAX_SETS} buffer sets)"

    # -- pipeline hooks -------------------------------------------------------

    def allocate_host(self, nbytes: int) -> np.ndarray:
        """The pipeline's slot arena: pinned, so host<->device copies run asynchronously."""
        self._host_arena = torch.empty(nbytes, dtype=torch.uint8, pin_memory=self._pin)
        self._arena_base = self._host_arena.data_ptr()
        return self._host_arena.numpy()

    def configure(self, buffer_bytes: int, outputs: int):
        """Sizes the device buffer sets for the pipeline's chunks, within the --gpu-memory budget."""
        set_bytes = (3 + outputs) * buffer_bytes
        count = min(MAX_SETS, self.gpu_memory // set_bytes)
        if count < 1:
            raise ValueError(
                f"--gpu-memory {self.gpu_memory} bytes holds no buffer set of {set_bytes} bytes "
                f"({3 + outputs} buffers of {buffer_bytes}); raise it to at least {set_bytes}"
            )
        self._sets = [DeviceSet(self.device, buffer_bytes, outputs, self._pin) for _ in range(count)]
        self._set_bytes, self._set_outputs, self._next = buffer_bytes, outputs, 0

    def _host(self, buf, nbytes: int) -> torch.Tensor:
        """The first nbytes of a host buffer as a uint8 tensor: a view into the pinned arena when it lies
        there (so copies run asynchronously), else a plain view."""
        raw = np.frombuffer(buf, dtype=np.uint8, count=nbytes)
        if self._host_arena is not None:
            offset = raw.ctypes.data - self._arena_base
            if 0 <= offset and offset + nbytes <= self._host_arena.numel():
                return self._host_arena[offset : offset + nbytes]
        return torch.from_numpy(raw)

    # -- the kernel -----------------------------------------------------------

    def compute(self, call: KernelCall) -> int:
        """Runs one KernelCall (backends/call.py); returns extract's count of inexact elements, else 0."""
        return self.submit(call).wait()

    def submit(self, call: KernelCall) -> Pending:
        """Starts one KernelCall; the returned Pending's wait() says when its outputs (and FP8 group scales)
        are in the host buffers, and returns the count compute() would."""
        validate(call, MAX_TRITON_VECTORS, "triton")
        n, k = call.n, len(call.outs)
        resident_out = self._resident(call.outs[0])
        if resident_out and (k != 1 or call.out_scale is not None):
            raise ValueError(f"triton: outputs in device memory: got {k} outputs of {call.out_dtype}, one of "
                             "F32/F16/BF16/F64 is supported; pass host buffers for the others")  # fmt: skip
        # Bytes per element the set's buffers must hold: operands and outputs not already on the device.
        sizes = [itemsize(op.dtype) for _, op in operands(call) if not self._resident(op.buffer)]
        need = n * max([*sizes, *([] if resident_out else [itemsize(call.out_dtype)])], default=0)
        if not self._sets or need > self._set_bytes or k > self._set_outputs:
            # Called directly (not from the pipeline, which configures once): grow to fit this call.
            for dev in self._sets:
                if dev.last is not None:
                    dev.last.wait()
            self.configure(max(need, self._set_bytes, 1), max(k, self._set_outputs))
        dev = self._sets[self._next]
        self._next = (self._next + 1) % len(self._sets)
        if dev.last is not None:
            dev.last.wait()  # the set's previous chunk has left the device (and its count was read)
        fp8_out = call.out_scale is not None
        with self._stream(self._h2d):
            slots, scales, meta = self._inputs(dev, call)
            rows = call.alphas if call.mode in ("merge", "apply") else [[1.0]] * k
            alphas = dev.staged("alphas", torch.tensor(rows, dtype=torch.float64).reshape(-1), self._pin)
            inputs_ready = self._h2d.record_event()
        out_code = KERNEL_CODES[call.out_dtype]
        out_bytes, row = n * itemsize(call.out_dtype), self._k.padded(n)  # rows 16-byte aligned (launch.py)
        row_bytes = row * itemsize(call.out_dtype)
        layout = self._k.shared_layout([op.scale for _, op in operands(call)], n)
        if resident_out:  # one output row, in place: its own alignment
            out = call.outs[0].view(torch.uint8).reshape(-1)[:out_bytes].view(self._k.BITS_DTYPE[out_code]).view(1, n)
        else:
            out = dev.buffer("out", k * row_bytes).view(self._k.BITS_DTYPE[out_code]).view(k, row)[:, :n]
        if isinstance(self._compute, torch.cuda.Stream) and (resident_out or len(sizes) < len(operands(call))):
            self._compute.wait_stream(torch.cuda.current_stream(self.device))  # device tensors: their writers first
        with self._stream(self._compute):
            self._compute.wait_event(inputs_ready)
            dev.count.zero_()
            m = max(1, len(call.vectors))
            if fp8_out:
                o = call.out_scale
                wide = dev.buffer("fp8_results", k * row * 8).view(torch.float64).view(k, row)[:, :n]
                group_scales = dev.buffer("fp8_scales", 4 * k * o.groups(n)).view(torch.float32).view(k, -1)
                self._k.launch(call.mode, slots, scales, meta, wide.view(torch.int64), alphas, dev.count, n,
                               self._k.F64, m, layout)  # fmt: skip
                block_rows, block_cols = (o.block_rows, o.block_cols) if o.kind == "block" else (1, o.cols)
                self._k.launch_quantize(wide, out, group_scales, n, o.cols, block_rows, block_cols)
            else:
                self._k.launch(call.mode, slots, scales, meta, out, alphas, dev.count, n, out_code, m, layout)
            computed = self._compute.record_event()
        with self._stream(self._d2h):
            self._d2h.wait_event(computed)
            for j in range(0 if resident_out else k):
                self._host(call.outs[j], out_bytes).copy_(
                    dev.buffer("out", k * row_bytes)[j * row_bytes : j * row_bytes + out_bytes], non_blocking=self._pin
                )
            if fp8_out:
                groups = call.out_scale.groups(n)
                for j, buf in enumerate(call.out_scale.buffers):
                    self._host(buf, 4 * groups).copy_(group_scales[j].view(torch.uint8), non_blocking=self._pin)
            if call.mode == "extract":
                dev.count_host.copy_(dev.count, non_blocking=self._pin)
            done = self._d2h.record_event()
        dev.last = Pending(done, dev.count_host if call.mode == "extract" else None)
        return dev.last

    def _inputs(self, dev: DeviceSet, call: KernelCall):
        """Copies the call's operands and their scales to the set; returns (slots, scales, meta) for launch."""
        n = call.n
        named = [("base", call.base), ("chat", call.chat), ("cp", call.cp)]
        if call.mode == "apply":  # vector 0 takes the chat slot, vectors 1..3 the v slots
            named = [("cp", call.cp), ("chat", call.vectors[0])] + [
                (f"v{m}", v) for m, v in enumerate(call.vectors) if m
            ]
        slots, packed, meta = {}, [], np.zeros((len(self._k.SLOTS), self._k.META_WORDS), np.int64)
        offset = 0
        for name, op in named:
            if op is None:
                continue
            nbytes = n * itemsize(op.dtype)
            if self._resident(op.buffer):
                device_bytes = op.buffer.view(torch.uint8).reshape(-1)[:nbytes]
            else:
                device_bytes = dev.buffer(f"in{self._k.SLOTS.index(name)}", nbytes)
                if nbytes:
                    device_bytes.copy_(self._host(op.buffer, nbytes), non_blocking=self._pin)
            kind = NO_SCALE
            if op.scale is not None:
                s = op.scale
                kind = SCALE_KINDS[s.kind]
                count = scale_entries(s, n)
                if self._resident(s.buffer):
                    packed.append(s.buffer.view(torch.uint8).reshape(-1)[: 4 * count].view(torch.float32))
                else:
                    packed.append(np.frombuffer(s.buffer, np.uint8, count=4 * count).view(np.float32))
                per_row = -(-s.cols // s.block_cols)
                meta[self._k.SLOTS.index(name)] = [
                    offset,
                    s.cols,
                    s.first_element,
                    s.block_rows,
                    s.block_cols,
                    s.first_scale_row,
                    per_row,
                    0,
                ]
                offset += count
            slots[name] = (device_bytes.view(self._k.BITS_DTYPE[KERNEL_CODES[op.dtype]]), KERNEL_CODES[op.dtype], kind)
        if any(isinstance(p, torch.Tensor) for p in packed):  # some on the device already: join them there
            scales = torch.cat([p if isinstance(p, torch.Tensor) else torch.from_numpy(p).to(self.device)
                                for p in packed])  # fmt: skip
            if isinstance(self._compute, torch.cuda.Stream):  # freed here, but the kernel reads it later
                scales.record_stream(self._compute)
        else:
            host_scales = torch.from_numpy(np.concatenate(packed) if packed else np.ones(1, np.float32))
            scales = dev.staged("scales", host_scales, self._pin)
        return slots, scales, dev.staged("meta", torch.from_numpy(meta.reshape(-1)), self._pin)

    def _resident(self, buf) -> bool:
        """A torch tensor on this backend's device (used where it is)."""
        if not isinstance(buf, torch.Tensor) or buf.device.type != self.device.type:
            return False
        return self.device.index is None or buf.device.index in (None, self.device.index)

    def _stream(self, stream):
        return torch.cuda.stream(stream) if isinstance(stream, torch.cuda.Stream) else stream
