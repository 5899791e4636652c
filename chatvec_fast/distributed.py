"""Sharing one output among several workers: GPUs in one process, or ranks started by torchrun.

Tensors are independent, so no tensor data crosses workers: each takes a
byte-balanced set of output shards, reads only the inputs those need and
writes those files. Ranks meet in torch.distributed collectives only to agree
that every rank succeeded (and to add up counts); rank 0 then writes the
index and report and renames the output into place. The files are the same
bytes whoever writes them, so the output does not depend on the worker count.

    torchrun --nproc-per-node 8 -m chatvec_fast merge --base ... --out ...
"""

from __future__ import annotations

import os
from dataclasses import dataclass


def partition(sizes: list[int], parts: int) -> list[list[int]]:
    """Splits item indices into `parts` groups of nearly equal total size (largest first onto the lightest
    group, ties to the lower group); each group lists its items in their original order."""
    loads = [0] * parts
    groups: list[list[int]] = [[] for _ in range(parts)]
    for i in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
        g = min(range(parts), key=lambda g: (loads[g], g))
        groups[g].append(i)
        loads[g] += sizes[i]
    return [sorted(g) for g in groups]


@dataclass
class Ranks:
    """This process's place in a torchrun job."""

    rank: int
    world: int
    local_rank: int
    local_world: int

    @property
    def leader(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> Ranks | None:
        """The job's ranks when started by torchrun with more than one process, else None."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return None
        import torch
        import torch.distributed as dist

        if not dist.is_initialized():
            # Control messages are CPU tensors (gloo); on GPU machines NCCL serves CUDA tensors.
            backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend=backend)
        return cls(
            dist.get_rank(),
            dist.get_world_size(),
            int(os.environ.get("LOCAL_RANK", "0")),
            int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
        )

    def barrier(self):
        import torch.distributed as dist

        dist.barrier()

    def all_succeeded(self, ok: bool) -> bool:
        """True when every rank passes ok=True."""
        return self._reduce(1 if ok else 0, "min") == 1

    def total(self, value: int) -> int:
        return self._reduce(value, "sum")

    def _reduce(self, value: int, op: str) -> int:
        import torch
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.int64)
        dist.all_reduce(t, op=dist.ReduceOp.MIN if op == "min" else dist.ReduceOp.SUM)
        return int(t.item())

    def close(self):
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
