"""The triton backend: the Triton kernel on a CUDA device, fed and drained asynchronously.

Per chunk, on a ring of device buffer sets (at most --gpu-memory in all):

    h2d stream      inputs: pinned host slot -> device
    compute stream  the kernel, after the inputs' event
    d2h stream      outputs: device -> pinned host slot, after the kernel's event

submit() returns at once with the chunk's last event; the pipeline's writers
wait on it before writing. Disk reads (reader thread), H2D, the kernel, D2H
and disk writes (writer threads) therefore overlap across chunks, and a tensor
larger than a buffer set streams through chunk by chunk.

Without CUDA but with TRITON_INTERPRET=1 the same code runs with the CPU
standing in for the device: streams and events become no-ops and the kernel
runs in triton's interpreter (slowly), which is how the tests cover it.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from ..dtypes import KERNEL_CODES, itemsize

DEFAULT_GPU_MEMORY = 2 << 30  # 2 GiB: three buffer sets of (3 + K) x 4 MiB fit many times over
MAX_SETS = 3  # triple buffering: one set in H2D, one in the kernel, one in D2H


class _Done:
    """A CPU stand-in for a CUDA event: everything issued is already done."""

    def synchronize(self):
        pass

    def query(self) -> bool:
        return True


class _Now:
    """A CPU stand-in for a CUDA stream."""

    def wait_event(self, event):
        pass

    def record_event(self):
        return _Done()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class Pending:
    """A submitted chunk: wait() blocks until its outputs are in the host buffers; returns the extract count."""

    def __init__(self, event, count_host: torch.Tensor | None):
        self.event = event
        self.count_host = count_host
        self._count: int | None = None

    def wait(self) -> int:
        if self._count is None:
            self.event.synchronize()
            self._count = int(self.count_host.item()) if self.count_host is not None else 0
        return self._count


class _DeviceSet:
    def __init__(self, device, buffer_bytes: int, outputs: int, pin: bool):
        self.inputs = [torch.empty(buffer_bytes, dtype=torch.uint8, device=device) for _ in range(3)]
        self.out = torch.empty(outputs * buffer_bytes, dtype=torch.uint8, device=device)
        self.alphas = torch.empty(outputs, dtype=torch.float64, device=device)
        self.alphas_host = torch.empty(outputs, dtype=torch.float64, pin_memory=pin)
        self.count = torch.zeros(1, dtype=torch.int64, device=device)
        self.count_host = torch.zeros(1, dtype=torch.int64, pin_memory=pin)
        self.last: Pending | None = None  # the chunk that used this set last


class TritonBackend:
    name = "triton"
    exact = True

    def __init__(self, device: str | None = None, threads: int | None = None, gpu_memory: int | None = None):
        try:
            from ..kernels.launch import BITS_DTYPE, launch
        except ImportError as exc:
            raise RuntimeError(
                f"the triton backend needs triton ({exc}); install it with `pip install 'chatvec-fast[gpu]'`"
            ) from None
        self._launch, self._bits = launch, BITS_DTYPE
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
            self._h2d = self._compute = self._d2h = _Now()
            self._pin = False
        else:
            raise RuntimeError(
                "--backend triton needs a CUDA device; set TRITON_INTERPRET=1 to run the kernel on the CPU "
                "(for tests: it is very slow), or use --backend native"
            )
        self.gpu_memory = gpu_memory or DEFAULT_GPU_MEMORY
        self._sets: list[_DeviceSet] = []
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
        self._sets = [_DeviceSet(self.device, buffer_bytes, outputs, self._pin) for _ in range(count)]
        self._set_bytes, self._set_outputs, self._next = buffer_bytes, outputs, 0

    def _host(self, buf: np.ndarray, nbytes: int) -> torch.Tensor:
        if self._host_arena is not None:
            offset = buf.ctypes.data - self._arena_base
            if 0 <= offset and offset + nbytes <= self._host_arena.numel():
                return self._host_arena[offset : offset + nbytes]
        return torch.from_numpy(np.asarray(buf[:nbytes]))

    # -- the kernel -----------------------------------------------------------

    def compute(self, base, base_dtype, chat, chat_dtype, cp, cp_dtype, n, alphas, outs, out_dtype) -> int:
        return self.submit(base, base_dtype, chat, chat_dtype, cp, cp_dtype, n, alphas, outs, out_dtype).wait()

    def submit(self, base, base_dtype, chat, chat_dtype, cp, cp_dtype, n, alphas, outs, out_dtype) -> Pending:
        widest = max(itemsize(d) for d in (base_dtype, chat_dtype, cp_dtype, out_dtype) if d)
        if not self._sets or n * widest > self._set_bytes or len(outs) > self._set_outputs:
            # Called directly (not from the pipeline, which configures once): grow to fit this call.
            for dev in self._sets:
                if dev.last is not None:
                    dev.last.wait()
            self.configure(max(n * widest, self._set_bytes, 1), max(len(outs), self._set_outputs))
        dev = self._sets[self._next]
        self._next = (self._next + 1) % len(self._sets)
        if dev.last is not None:
            dev.last.wait()  # the set's previous chunk has left the device (and its count was read)
        mode = "convert" if chat is None else ("extract" if cp is None else ("apply" if base is None else "merge"))
        codes = {"out": KERNEL_CODES[out_dtype]}
        views = {}
        k = len(outs) if mode != "extract" else 1
        with self._stream(self._h2d):
            for slot, (name, buf, dtype) in enumerate(
                (("base", base, base_dtype), ("chat", chat, chat_dtype), ("cp", cp, cp_dtype))
            ):
                if buf is None:
                    continue
                nbytes = n * itemsize(dtype)
                dev.inputs[slot][:nbytes].copy_(self._host(buf, nbytes), non_blocking=self._pin)
                codes[name] = KERNEL_CODES[dtype]
                views[name] = dev.inputs[slot][:nbytes].view(self._bits[codes[name]])
            dev.alphas_host[:k] = torch.tensor(list(alphas[:k]) or [1.0] * k, dtype=torch.float64)
            dev.alphas[:k].copy_(dev.alphas_host[:k], non_blocking=self._pin)
            inputs_ready = self._h2d.record_event()
        out_bytes = n * itemsize(out_dtype)
        out = dev.out[: k * out_bytes].view(self._bits[codes["out"]]).view(k, n)
        with self._stream(self._compute):
            self._compute.wait_event(inputs_ready)
            dev.count.zero_()
            self._launch(
                mode, views.get("base"), views.get("chat"), views.get("cp"), out, dev.alphas[:k], dev.count, n, codes
            )
            computed = self._compute.record_event()
        with self._stream(self._d2h):
            self._d2h.wait_event(computed)
            for j in range(k):
                host = self._host(outs[j], out_bytes)
                host.copy_(dev.out[j * out_bytes : (j + 1) * out_bytes], non_blocking=self._pin)
            if mode == "extract":
                dev.count_host.copy_(dev.count, non_blocking=self._pin)
            done = self._d2h.record_event()
        dev.last = Pending(done, dev.count_host if mode == "extract" else None)
        return dev.last

    def _stream(self, stream):
        return torch.cuda.stream(stream) if isinstance(stream, torch.cuda.Stream) else stream
