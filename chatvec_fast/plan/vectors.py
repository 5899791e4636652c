"""apply with several saved vectors: cp + a1*v1 + ... + aM*vM, each vector read once, in one kernel call.

The first vector is planned against cp like a single one (plan/pairing.py); the others must hold the same
tensors with the same shapes (their dtypes may differ: f32, f64, bf16, f16), so every merged element has
all M terms. A tensor only one vector has would get a different formula from the rest, which is not what
`--vector V1 --vector V2` says: such vectors are refused, naming the tensors.
"""

from __future__ import annotations

from ..dtypes import VECTOR_DTYPES
from ..read.checkpoint import Checkpoint
from .options import vector_roles
from .problems import Problems, listing
from .types import Plan


def add_vectors(plan: Plan, vectors: list[Checkpoint]):
    """Gives every merged tensor of a plan made with vectors[0] all the vectors' tensors."""
    first, problems = vectors[0], Problems()
    for v in vectors[1:]:
        differ = sorted(set(v.tensors) ^ set(first.tensors))
        if differ:
            problems.add("vectors", f"{v.path} and {first.path} differ in which tensors they hold: {listing(differ)}")
        for name in set(v.tensors) & set(first.tensors):
            h, h0 = v.tensors[name], first.tensors[name]
            if h.shape != h0.shape:
                problems.add("vectors", f"{name}: {first.path} has shape {h0.shape}, {v.path} {h.shape}")
            elif h.dtype not in VECTOR_DTYPES:
                problems.add("vectors", f"{name}: {v.path} holds {h.dtype}, a vector holds f32, f64, bf16 or f16")
    problems.raise_if_any()
    for t in plan.tensors:
        if t.chat is not None and t.merged_elements:
            t.vectors = tuple(v.tensors[t.name] for v in vectors)
    cp = plan.inputs["cp"]
    plan.inputs = {**dict(zip(vector_roles(len(vectors)), vectors)), "cp": cp}
