"""The inputs a plan reads, held once in memory: every tensor of base, chat and cp it needs, with FP8 scales.

One allocation (an arena) holds them all, each at a 64-byte-aligned offset: in host memory (numpy: its large
allocations get transparent huge pages) or on a device (torch). They are read with the byte reader
(read/chunks.py), as the pipeline reads them, each file checked to be the one its header came from; to a
device through a pinned host buffer of BOUNCE bytes.
"""

from __future__ import annotations

import numpy as np

from ..read.chunks import InputFiles
from ..units import format_bytes

ALIGN = 64
BOUNCE = 64 << 20  # 64 MiB a host-to-device copy: PCIe runs near its peak from 8 MiB up


def needed(plan) -> list:
    """Every input TensorInfo the plan's tensors read (the formula's operands, copied tensors, FP8 scales)."""
    seen: dict = {}
    for t in plan.tensors:
        for seg in t.segments:
            if seg.kind == "merge":
                infos = [t.base, *t.deltas, t.cp]
            elif seg.kind == "copy":
                infos = [seg.source]
            else:
                infos = []  # "scales": written from the weight's results
            for info in infos:
                if info is not None:
                    seen.setdefault(info, None)
                    spec = plan.scales.get(info)
                    if spec is not None:
                        seen.setdefault(spec.tensor, None)
    return list(seen)


class HeldInputs:
    """Where each held input lies in the arena; `nbytes` before anything is allocated, `load()` reads them."""

    def __init__(self, plan, device: str, on_device: bool):
        """on_device: held as a torch tensor on `device` for a device kernel (the CPU too, under the triton
        interpreter); else a numpy array in host memory."""
        self.device, self.on_device = device, on_device
        self.offsets: dict = {}
        size = 0
        self.by_role: dict[str, int] = {}
        role_of = {f.path: role for role, ckpt in plan.inputs.items() for f in ckpt.files}
        for info in needed(plan):
            self.offsets[info] = size
            size += -(-info.nbytes // ALIGN) * ALIGN
            role = role_of.get(info.path, "other")
            self.by_role[role] = self.by_role.get(role, 0) + info.nbytes
        self.nbytes = size
        self.arena = None

    def parts(self) -> str:
        """'base 2.20 GB, chat 2.20 GB, cp 2.20 GB'."""
        return ", ".join(f"{role} {format_bytes(n)}" for role, n in self.by_role.items())

    def load(self):
        """Reads every held input into a new arena (host numpy, or a torch tensor on the device)."""
        files = InputFiles()
        try:
            if self.on_device:
                arena = self._load_device(files)
            else:
                arena = np.empty(self.nbytes, np.uint8)
                for info, offset in self.offsets.items():
                    files.read(info, 0, arena[offset : offset + info.nbytes])
            files.check_unchanged()
        finally:
            files.close()
        self.arena = arena

    def _load_device(self, files: InputFiles):
        import torch

        arena = torch.empty(self.nbytes, dtype=torch.uint8, device=self.device)
        if not arena.is_cuda:  # the CPU standing in for a device: read in place
            host = arena.numpy()
            for info, offset in self.offsets.items():
                files.read(info, 0, host[offset : offset + info.nbytes])
            return arena
        bounce = torch.empty(min(BOUNCE, max(self.nbytes, 1)), dtype=torch.uint8, pin_memory=True)
        host = bounce.numpy()
        for info, offset in self.offsets.items():
            for first in range(0, info.nbytes, bounce.numel()):
                n = min(bounce.numel(), info.nbytes - first)
                files.read(info, first, host[:n])
                arena[offset + first : offset + first + n].copy_(bounce[:n])  # synchronous: the buffer is reused
        torch.cuda.synchronize(self.device)
        return arena

    def view(self, info, first: int, nbytes: int):
        """Bytes [first, first + nbytes) of a held input (a numpy or torch uint8 view)."""
        start = self.offsets[info] + first
        return self.arena[start : start + nbytes]

    def close(self):
        self.arena = None
