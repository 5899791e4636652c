"""Who does the work: the backends of this process (one per GPU, or one), its CPU threads, and its place
among torchrun ranks.

Tensors are independent, so no tensor data crosses workers: each takes a byte-balanced set of output
shards (plan/layout.py), reads only the inputs those need and writes those files. Ranks meet in
torch.distributed collectives only to agree that every rank succeeded; rank 0 then writes the index
and report and renames the output into place.

    torchrun --nproc-per-node 8 -m chatvec_fast merge --base ... --out ...
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from .. import _native
from ..backends import DEVICE_BACKENDS, get_backend, resolve
from ..job import Engine
from .stream import Pipeline


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

    def all_succeeded(self, ok: bool) -> bool:
        """True when every rank passes ok=True (a collective: every rank must call it)."""
        import torch
        import torch.distributed as dist

        t = torch.tensor([1 if ok else 0], dtype=torch.int64)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return int(t.item()) == 1

    def close(self):
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


@dataclass
class Workers:
    """The backends of this process (one per device) and, under torchrun, its ranks."""

    backends: list
    ranks: Ranks | None

    @property
    def leader(self) -> bool:
        return self.ranks is None or self.ranks.leader

    @property
    def math(self) -> str:
        return "float64" if getattr(self.backends[0], "exact", True) else "float32"

    def describe(self) -> str:
        text = self.backends[0].describe()
        if len(self.backends) > 1:
            text += f" x {len(self.backends)} devices"
        if self.ranks is not None:
            text += f", rank {self.ranks.rank} of {self.ranks.world}"
        return text

    def close(self):
        if self.ranks is not None:
            self.ranks.close()

    @classmethod
    def start(cls, engine: Engine) -> Workers:
        """Joins the torchrun job if there is one and makes this process's backends."""
        name, threads, gpu_memory = engine.backend, engine.threads, engine.gpu_memory
        ranks = Ranks.from_env()
        devices = list(engine.devices)
        if ranks is not None:
            # One process per GPU (or per share of the CPU cores) on each machine.
            if devices:
                devices = [devices[ranks.local_rank % len(devices)]]
            elif name in DEVICE_BACKENDS and _cuda_devices():  # asked for by name: auto stays native
                devices = [f"cuda:{ranks.local_rank % _cuda_devices()}"]
            if threads is None:
                cpus = _native.module.available_cpus() if _native.available else (os.cpu_count() or 1)
                threads = max(1, cpus // max(ranks.local_world, 1))
        if devices:  # GPUs named with --devices: a device backend (auto: triton, the device backend measured)
            backend = resolve(name, destination="device")
            return cls([get_backend(backend, threads, d, gpu_memory) for d in devices], ranks)
        return cls([get_backend(name, threads, None, gpu_memory)], ranks)


def _cuda_devices() -> int:
    if not (os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/nvidia0")):
        return 0
    import torch

    return torch.cuda.device_count()


def run_pipelines(jobs, outputs: int, chunk_elements: int, itemsize: int, progress, **slots) -> int:
    """Runs one pipeline per (backend, chunks) pair, in parallel threads; returns the extract count.
    slots: what the slot buffers hold besides (roles, scales, scale_bytes; see Pipeline)."""
    pipelines = [
        (Pipeline(backend, outputs, chunk_elements, itemsize=itemsize, progress=progress, **slots), chunks)
        for backend, chunks in jobs
    ]
    if len(pipelines) == 1:
        pipelines[0][0].run(pipelines[0][1])
        return pipelines[0][0].inexact
    errors: list[BaseException] = []

    def work(pipeline, chunks):
        try:
            pipeline.run(chunks)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=pc, name=f"chatvec-device-{i}") for i, pc in enumerate(pipelines)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return sum(p.inexact for p, _ in pipelines)
