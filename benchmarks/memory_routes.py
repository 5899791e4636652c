"""The contenders of bench_memory.py: ways to get a merged model into memory, each a callable of alpha.

The naive route and the floors use only torch, numpy, safetensors and transformers (no chatvec code), so they
measure what a user would write and what the hardware allows.
"""

from __future__ import annotations

import glob
import os
import shutil
import statistics
import threading
import time

import numpy as np

INTO = "merge_into (resident model)"
TO_DISK = "chatvec merge + from_pretrained"
NAIVE = "naive in-memory PyTorch (load_file x3, bf16 math, load_state_dict)"
FLOOR = "memory floor (inputs read from page cache, model written once)"
HELD = "held switch (HeldMerge, hold='host')"
MEMCPY = "memcpy of the same bytes (2 reads + 2 writes of the model)"
PIECE = 16 << 20  # 16 MiB reads: the page-cache read rate is flat from 1 MiB up (18.5 GB/s here)


def peak_reset() -> int:
    """Starts the peak RSS (VmHWM) again from the current RSS; returns the current RSS."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status("VmRSS:")


def peak_since(base: int) -> int:
    return _status("VmHWM:") - base


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))


def bits_equal(a, b, share: bool = False):
    """Whether two models hold the same bits in every tensor (share=True: the fraction of equal elements)."""
    sa, sb = a.state_dict(), b.state_dict()
    equal = total = 0
    for name, t in sb.items():
        eq = (sa[name].contiguous().view(-1).view(_int(t)) == t.contiguous().view(-1).view(_int(t))).sum().item()
        equal, total = equal + eq, total + t.numel()
    return round(equal / total, 6) if share else equal == total


def touch(model):
    """Reads one byte of every 4 KiB page of every tensor, as a first forward pass would (a model that
    from_pretrained maps from its files is read from them then)."""
    import torch

    for t in model.state_dict().values():
        t.detach().reshape(-1).view(torch.uint8)[::4096].sum()


def _int(t):
    import torch

    return {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]


def _shards(path: str) -> list[str]:
    return sorted(glob.glob(os.path.join(path, "*.safetensors")))


class Routes(dict):
    """The per-alpha contenders into one resident model; after(name) cleans up a run (not timed)."""

    def __init__(self, paths: dict, model, out: str):
        super().__init__()
        self.paths, self.model, self.out = paths, model, out
        self.disk_model = None
        self[INTO], self[TO_DISK], self[NAIVE], self[FLOOR] = self.into, self.to_disk, self.naive, self.floor

    def into(self, alpha: float):
        import chatvec_fast

        chatvec_fast.merge_into(self.model, self.paths["base"], self.paths["chat"], self.paths["cp"], alpha=alpha)

    def to_disk(self, alpha: float, keep: bool = False):
        import torch
        import transformers

        import chatvec_fast

        chatvec_fast.merge(self.paths["base"], self.paths["chat"], self.paths["cp"], self.out, alpha=alpha)
        loaded = transformers.AutoModelForCausalLM.from_pretrained(self.out, dtype=torch.bfloat16)
        touch(loaded)  # from_pretrained maps the files: the weights are read when first used, here
        self.disk_model = loaded if keep else None

    def naive(self, alpha: float):
        """What a user writes: each shard of the three models loaded, the formula in bf16, into the model."""
        import torch
        from safetensors.torch import load_file

        loaded = set()
        for b, c, p in zip(*(_shards(self.paths[r]) for r in ("base", "chat", "cp"))):
            base, chat, cp = load_file(b), load_file(c), load_file(p)
            merged = {n: cp[n] + alpha * (chat[n] - base[n]) if n in base else cp[n] for n in cp}
            with torch.no_grad():
                self.model.load_state_dict(merged, strict=False)
            loaded.update(merged)
            del base, chat, cp, merged
        assert loaded >= set(self.model.state_dict()), "the naive route missed tensors"

    def floor(self, alpha: float):
        """Every input byte read once from the page cache (three threads, one per model, as the pipeline
        reads side by side), cp's bytes straight into the parameters: the model written once."""
        from chatvec_fast.read.checkpoint import open_checkpoint

        params = self.model.state_dict()
        errors = []

        def read(role):
            try:
                scratch = np.empty(PIECE, np.uint8)
                for name, info in open_checkpoint(self.paths[role]).tensors.items():
                    fd = os.open(info.path, os.O_RDONLY)
                    try:
                        if role == "cp":
                            dest = params[name].view(-1).view(_int(params[name])).numpy().view(np.uint8)
                            _pread(fd, dest, info.offset)
                        else:
                            for first in range(0, info.nbytes, PIECE):
                                _pread(fd, scratch[: min(PIECE, info.nbytes - first)], info.offset + first)
                    finally:
                        os.close(fd)
            except BaseException as exc:  # noqa: BLE001 - raised in the caller
                errors.append(exc)

        threads = [threading.Thread(target=read, args=(r,)) for r in ("base", "chat", "cp")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]

    def after(self, name: str):
        self.disk_model = None
        shutil.rmtree(self.out, ignore_errors=True)

    def close(self):
        self.after(TO_DISK)


def _pread(fd: int, buf: np.ndarray, offset: int):
    done = 0
    while done < buf.nbytes:
        n = os.preadv(fd, [buf[done:]], offset + done)
        if n <= 0:
            raise OSError(f"short read at {offset + done}")
        done += n


class HeldRoutes(dict):
    """The held switch and its memcpy, over one model; the inputs loaded and the model mapped once (untimed)."""

    def __init__(self, paths: dict, model):
        super().__init__()
        import chatvec_fast

        self.held = chatvec_fast.HeldMerge(paths["base"], paths["chat"], paths["cp"], hold="host")
        self.held.apply(model, 0.0)  # loads and maps
        self.nbytes = self.held.nbytes
        self.pairs = []
        for t in self.held.plan.tensors:
            dest = self.held._places[t.name].bytes().numpy()
            views = [self.held.held.view(info, 0, info.nbytes) for info in (t.base, t.chat)]
            self.pairs.append((dest, *views))
        self[HELD], self[MEMCPY] = self.held.switch, self.memcpy

    def memcpy(self, alpha: float):
        for dest, base, chat in self.pairs:
            np.copyto(dest, base)
            np.copyto(dest, chat)


def gpu_held_switch(size: str = "7b", rounds: int = 5, device: str = "cuda") -> dict:
    """HeldMerge(hold="device") switches on a GPU against a device-to-device copy of the same byte count
    (every parameter written twice, from held base and chat), medians of alternating rounds, after a bit check
    of a sample of tensors against the native kernel. Skips cleanly without CUDA. device="cpu" runs the same
    code under TRITON_INTERPRET=1 (a smoke test of the script: its times mean nothing)."""
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        return {"skipped": "no CUDA device here: run this in a session with a GPU"}
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda _: None)
    import chatvec_fast

    t0 = time.perf_counter()
    paths = fast_triple(size)
    written = time.perf_counter() - t0
    held = chatvec_fast.HeldMerge(paths["base"], paths["chat"], paths["cp"], hold="device", device=device)
    model = _device_model(held.plan, device)
    t0 = time.perf_counter()
    held.apply(model, 0.5)  # load (3x the model to the device) and the kernel's autotuning
    load = time.perf_counter() - t0
    sample = _check_sample(held, model, 0.5)
    pairs = [(held._places[t.name].bytes(), held.held.view(t.base, 0, t.base.nbytes),
              held.held.view(t.chat, 0, t.chat.nbytes)) for t in held.plan.tensors]  # fmt: skip
    times = {"switch": [], "d2d copy": []}
    for _ in range(rounds):
        for alpha in (0.25, 0.5, 0.75):
            for name in times:
                sync(device)
                t1 = time.perf_counter()
                if name == "switch":
                    held.switch(alpha)
                else:
                    for dest, base, chat in pairs:
                        dest.copy_(base)
                        dest.copy_(chat)
                sync(device)
                times[name].append(time.perf_counter() - t1)
    n = sum(t.out_nbytes for t in held.plan.tensors)
    med = {k: statistics.median(v) for k, v in times.items()}
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else "CPU, triton interpreter"
    doc = {"device": name, "size": size, "model_bytes": n, "held_bytes": held.nbytes,
           "inputs_written_s": written, "load_s": load, "sample_equal": sample, "medians_s": med, "runs": times,
           "gbps": {k: 4 * n / v / 1e9 for k, v in med.items()}}  # fmt: skip
    doc["table"] = (
        f"{doc['device']}, {size} ({n / 1e9:.1f} GB per model, {held.nbytes / 1e9:.1f} GB held): switch "
        f"{med['switch'] * 1e3:.1f} ms ({doc['gbps']['switch']:.0f} GB/s), D2D copy of the same bytes "
        f"{med['d2d copy'] * 1e3:.1f} ms ({doc['gbps']['d2d copy']:.0f} GB/s): "
        f"{med['switch'] / med['d2d copy']:.2f}x; load {load:.1f} s; sample bits equal: {sample}"
    )
    return doc


def _device_model(plan, device: str):
    """A torch module of cp's tensors on the device under their checkpoint names (no transformers needed)."""
    import torch

    from chatvec_fast.memory.sink import new_tensor

    root = torch.nn.Module()
    for t in plan.tensors:
        *path, leaf = t.name.split(".")
        module = root
        for part in path:
            if not hasattr(module, part):
                module.add_module(part, torch.nn.Module())
            module = getattr(module, part)
        module.register_buffer(leaf, new_tensor(t.out_dtype, t.shape, device))
    return root


def _check_sample(held, model, alpha: float, count: int = 4) -> bool:
    """The first `count` merged tensors on the device equal the native kernel's result on the host."""
    from chatvec_fast.backends import get_backend
    from chatvec_fast.backends.call import KernelCall, Operand

    backend = get_backend("native")
    merged = [t for t in held.plan.tensors if t.base is not None][:count]
    for t in merged:
        b, c, p = (Operand(held.held.view(i, 0, i.nbytes).cpu().numpy(), i.dtype) for i in (t.base, t.chat, t.cp))
        out = np.empty(t.out_nbytes, np.uint8)
        backend.compute(KernelCall(t.numel, "merge", [out], t.out_dtype, [[alpha]], base=b, chat=c, cp=p))
        if not np.array_equal(out, held._places[t.name].bytes().cpu().numpy()):
            return False
    return True


def fast_triple(size: str) -> dict[str, str]:
    """base, chat and cp of a synthetic SHAPES shape in one model.safetensors each, filled with a tiled 64 MiB
    block of random bf16 values (a role's own rotation of it): the kernels' time does not depend on the values,
    and the 7B shape's 40 GB are then written at disk speed, where make_triple's per-element random numbers
    take a quarter of an hour. Cached under CACHE like models()."""
    import json
    import math

    from common import CACHE

    from chatvec_fast.testing.synthetic import SHAPES, tensor_specs, to_bf16_bits
    from chatvec_fast.write.shard import build_header

    root = os.path.join(CACHE, f"tiled-{size}")
    paths = {r: os.path.join(root, r) for r in ("base", "chat", "cp")}
    if os.path.exists(os.path.join(root, ".complete")):
        return paths
    shape = SHAPES[size]
    tile = to_bf16_bits(np.random.default_rng(0).standard_normal(32 << 20, dtype=np.float32) * 0.02).view(np.uint8)
    entries = [(name, "BF16", dims, 2 * math.prod(dims)) for name, dims in tensor_specs(shape)]
    header, _ = build_header(entries, {"format": "pt"})
    for i, path in enumerate(paths.values()):
        os.makedirs(path, exist_ok=True)
        block = np.roll(tile, 4099 * 2 * i)  # each role its own values: chat - base is not zero
        with open(os.path.join(path, "model.safetensors"), "wb") as f:
            f.write(header)
            for *_, nbytes in entries:
                for first in range(0, nbytes, block.nbytes):
                    f.write(block[: min(block.nbytes, nbytes - first)].tobytes())
        with open(os.path.join(path, "config.json"), "w") as f:
            json.dump({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": shape.hidden,
                       "num_hidden_layers": shape.layers, "vocab_size": shape.vocab}, f)  # fmt: skip
    open(os.path.join(root, ".complete"), "w").close()
    return paths
