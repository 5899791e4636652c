"""HeldMerge: base, chat and cp held once in memory, and a model's weights rewritten for any alpha from them.

A switch reads the held inputs and writes the model once, with the merge's own kernel calls (memory/held_calls.py):
on the CPU at memory speed (the native kernel over the arena and the parameters' bytes), on a GPU in one pass
over device memory (the triton kernel over device tensors). No file is read after load().

The object knows what the model's weights hold: `alpha` is the last alpha applied in full, PARTIAL while a
switch runs and after one that was interrupted (an exception, Ctrl-C), None before any.
"""

from __future__ import annotations

import os
import time

from .. import _native
from ..backends import get_backend
from ..report import MergeReport
from ..run import check_vectors
from ..units import parse_size
from .budget import check_fits
from .held_calls import plan_held_chunks, write_tensor
from .held_inputs import HeldInputs
from .into import check_model, note_partial
from .options import alpha_values, build_job, device_name, roles, takes_memory_options
from .sink import as_bytes, new_tensor
from .targets import model_places
from .tensors import plan_in_memory, report_for, same_device

PARTIAL = "partial"


class HeldMerge:
    """The inputs of one merge (or apply) held in memory, for models rewritten at many alphas.

    >>> held = HeldMerge("base", "chat", "cp", hold="host")
    >>> held.nbytes                      # what load() will hold, known before it does
    >>> held.apply(model, 0.5)           # loads (refused, with a MemoryError, when it does not fit), writes
    >>> held.switch(0.7); held.alpha     # 0.7; PARTIAL after an interrupted switch
    """

    @takes_memory_options
    def __init__(self, base=None, chat=None, cp=None, *, vector=None, hold: str = "host", device=None,
                 max_memory: str | int | None = None, **options):  # fmt: skip
        """hold: "host" (host memory; the CPU kernel) or "device" (a GPU's memory, `device`, default "cuda";
        the triton kernel). max_memory: hold at most this much ('40GB'; default: what the device has free)."""
        if hold not in ("host", "device"):
            raise ValueError(f"hold {hold!r}: expected 'host' (host memory) or 'device' (a GPU's memory)")
        self._command, inputs, self._vectors = roles(base, chat, cp, vector)
        # Planned with alphas 0 and 1: a tensor whose two alphas differ takes each switch's alpha, one whose
        # alphas agree has its own (alpha_for), as merge would give it.
        sentinels = [0.0, 1.0] if self._vectors == 1 else [(0.0,) * self._vectors, (1.0,) * self._vectors]
        self.job, self.plan = plan_in_memory(build_job("HeldMerge", self._command, inputs, sentinels, options))
        if hold == "host" and device not in (None, "cpu"):
            raise ValueError(f"hold='host' holds the inputs in host memory; device={device!r} is for hold='device'")
        self.hold = hold
        self.device = device_name(device if device is not None else ("cuda" if hold == "device" else "cpu"))
        if hold == "device" and any(t.out_scale is not None for t in self.plan.tensors):
            raise ValueError("hold='device' makes F32/F16/BF16 outputs; an FP8 output (dtype='fp8') needs "
                             "hold='host'")  # fmt: skip
        self.held = HeldInputs(self.plan, self.device, on_device=hold == "device")
        self.max_memory = parse_size(max_memory)
        self.alpha = None  # what the model's weights hold: an alpha, PARTIAL, or None before any apply
        self.model = None
        self._places = self._backend = self._chunks = None

    @property
    def nbytes(self) -> int:
        """Bytes load() holds: every input tensor the merge reads (about 3x the model for base, chat and cp)."""
        return self.held.nbytes

    def __repr__(self) -> str:
        state = "loaded" if self.held.arena is not None else "not loaded"
        return f"HeldMerge(hold={self.hold!r}, {self.device}, {self.held.parts()}; {state}, alpha {self.alpha!r})"

    def load(self) -> HeldMerge:
        """Reads the inputs into memory once (apply and switch call it); MemoryError when they do not fit."""
        if self.held.arena is None:
            check_fits(self.nbytes, self.device, f"HeldMerge(hold={self.hold!r})", self.held.parts(), self.max_memory)
            self._backend = self._make_backend()
            check_vectors(self.plan, self._backend)
            self.held.load()
            largest = max((t.numel for t in self.plan.tensors), default=1)
            self._chunks = plan_held_chunks(self.plan.tensors, max(largest, 1))  # one call per segment
        return self

    def apply(self, model, alpha) -> MergeReport:
        """Rewrites every parameter of `model` (mapped and checked as merge_into maps them) with the merge at
        `alpha`; the bits merge writes with the same options. Returns what was done."""
        check_model(model, "HeldMerge.apply")
        value = alpha_values(self._command, self._vectors, alpha)[0]
        self.load()
        if model is not self.model:
            self._places, self.model, self.alpha = model_places(model, self.plan), model, None
        import torch

        t0, done, tensors = time.perf_counter(), 0, self.plan.tensors
        self.alpha = PARTIAL
        with torch.no_grad():
            try:
                for t in tensors:
                    place = self._places[t.name]
                    direct = place.direct and same_device(place.view.device, self.device)
                    staged = None if direct else new_tensor(t.out_dtype, t.shape, self.device)
                    self._write(t, as_bytes(place.view if direct else staged), value)
                    if staged is not None:
                        place.deliver(staged)
                    done += 1
            except BaseException as exc:
                note_partial(exc, done, len(tensors), f"HeldMerge.apply(alpha={value!r}) was interrupted")
                raise
        self.alpha = value
        report = report_for(self.job, self.plan, self._backend.describe(), f"{type(model).__name__} (in memory)",
                            time.perf_counter() - t0)  # fmt: skip
        report.alphas = [value]
        return report

    def switch(self, alpha) -> MergeReport:
        """apply() on the model of the last apply."""
        if self.model is None:
            raise RuntimeError("HeldMerge.switch(alpha) rewrites the model given to apply(model, alpha) last; call "
                               "apply first")  # fmt: skip
        return self.apply(self.model, alpha)

    def tensors(self, alpha):
        """(checkpoint name, tensor) of the merge at `alpha`, each new memory on the held device (vLLM's
        load_weights takes these), from the held inputs; the model given to apply is not touched."""
        value = alpha_values(self._command, self._vectors, alpha)[0]
        self.load()
        for t in self.plan.tensors:
            out = new_tensor(t.out_dtype, t.shape, self.device)
            self._write(t, as_bytes(out), value)
            yield t.name, out

    def close(self):
        """Frees the held inputs (the model keeps its weights, and `alpha` says what they hold)."""
        self.held.close()
        self._backend = self._chunks = None

    def __enter__(self) -> HeldMerge:
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _write(self, t, dest, value):
        """Tensor t at alpha `value` into dest (its flat uint8 bytes on the held device), complete on return."""
        own = t.alphas[0] == t.alphas[1]  # an alpha_for rule's: the same whatever the switch's alpha
        row = [t.alphas[0]] if own else list(value) if isinstance(value, tuple) else [value]
        target = dest.numpy() if self.device == "cpu" and self.hold == "host" else dest
        for pending in write_tensor(t, self._chunks[id(t)], self.held, self.plan.scales, target, self._backend, row):
            pending.wait()

    def _make_backend(self):
        e = self.job.engine
        name = e.backend
        if self.hold == "device":
            if name not in ("auto", "triton"):
                raise ValueError(f"hold='device' computes with the triton kernel on {self.device}; backend={name!r} "
                                 "runs on the CPU: use hold='host' for it")  # fmt: skip
            return get_backend("triton", e.threads, self.device, e.gpu_memory)
        if name == "auto":
            name = os.environ.get("CHATVEC_BACKEND") or "auto"
            name = ("native" if _native.available else "torch") if name in ("auto", "triton") else name
        if name == "triton":
            raise ValueError("hold='host' computes on the CPU; backend='triton' needs hold='device'")
        return get_backend(name, e.threads)
