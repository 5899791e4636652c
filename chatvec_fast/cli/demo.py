"""`chatvec demo`: three tiny Llama-shaped models, merged and checked against the float64 reference.

cp has an expanded vocabulary (600 rows against base/chat's 512, as
Chinese-LLaMA extends Llama) and each model is sharded differently, so the
demo exercises the pairing, the shared-rows policy and the sharded writer.
The check is `verify --all`: every element re-derived from the inputs.
"""

from __future__ import annotations

import os
import tempfile

from ..api import merge, verify
from ..testing.synthetic import make_triple


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
        (check,) = verify(out, every=True)
        verdict = "OK" if check.ok else "MISMATCH"
        print(f"check against the float64 reference: {check.equal}/{check.checked} elements bit-identical ({verdict})")
        print(report.summary())
        return 0 if check.ok else 1
