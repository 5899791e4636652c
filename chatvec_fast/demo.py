"""`chatvec demo`: three tiny Llama-shaped models, merged and checked against the float64 reference.

cp has an expanded vocabulary (600 rows against base/chat's 512, as
Chinese-LLaMA extends Llama) and each model is sharded differently, so the
demo exercises the pairing, the shared-rows policy and the sharded writer.
"""

from __future__ import annotations

import os
import tempfile

from .api import merge
from .checkpoint import open_checkpoint, read_tensor_bytes
from .synthetic import make_triple


def check_against_reference(base: str, chat: str, cp: str, out: str, alpha: float) -> tuple[int, int]:
    """Compares every output tensor with round(cp + alpha * (chat - base)) in float64.

    Rows beyond base's vocabulary must equal cp's. Returns (elements checked, mismatches).
    """
    import torch

    from .reference import as_torch, round_float64

    b, c, p, o = (open_checkpoint(x) for x in (base, chat, cp, out))
    checked = mismatched = 0
    for name, info in o.tensors.items():
        got = as_torch(read_tensor_bytes(info), info.dtype, info.shape)
        cp_t = as_torch(read_tensor_bytes(p.tensors[name]), p.tensors[name].dtype, info.shape)
        want = cp_t.clone()
        if name in b.tensors:
            bi, ci = b.tensors[name], c.tensors[name]
            rows = bi.shape[0] if bi.shape else None
            delta = (
                as_torch(read_tensor_bytes(ci), ci.dtype, ci.shape).double()
                - as_torch(read_tensor_bytes(bi), bi.dtype, bi.shape).double()
            )
            merged = round_float64(cp_t[:rows].double() + alpha * delta, got.dtype)
            want[:rows] = merged
        mismatched += int((got.view(torch.int16) != want.view(torch.int16)).sum())
        checked += got.numel()
    return checked, mismatched


def run_demo(alpha: float = 0.5, backend: str = "auto", keep: str | None = None) -> int:
    with tempfile.TemporaryDirectory(prefix="chatvec-demo-") as tmp:
        root = keep or tmp
        print(f"making three tiny Llama-shaped models in {root} ...")
        paths = make_triple(root, "tiny", cp_vocab=600, shard_bytes={"base": None, "chat": 100_000, "cp": 60_000})
        out = os.path.join(root, "merged")
        args = (paths["base"], paths["chat"], paths["cp"], out)
        plan = merge(*args, alpha=alpha, backend=backend, dry_run=True)
        print(plan.plan.describe())
        report = merge(*args, alpha=alpha, backend=backend, overwrite=True)
        checked, mismatched = check_against_reference(*args, alpha)
        verdict = "OK" if mismatched == 0 else "MISMATCH"
        print(
            f"check against the float64 reference: {checked - mismatched}/{checked} elements bit-identical ({verdict})"
        )
        print(report.summary())
        return 0 if mismatched == 0 else 1
