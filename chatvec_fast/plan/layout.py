"""Where the output's bytes go: its shard files, and which worker (device or torchrun rank) writes which.

Tensors are independent, so workers share nothing but the plan: each takes a byte-balanced set of whole
output shards. The files are the same bytes whoever writes them.
"""

from __future__ import annotations

from ..filenames import SINGLE_NAME, shard_name
from ..read.checkpoint import Checkpoint
from .types import OutputShard, TensorPlan


def layout(source: Checkpoint, plans: dict[str, TensorPlan], max_shard_size: int | None):
    """Output shards: the source's own files (same tensors), or re-packed under max_shard_size.
    Returns (shards, single_file)."""
    if max_shard_size is not None:
        return _pack(list(plans.values()), max_shard_size)
    # The source's grouping, under our own names: an input's shard may be called anything (tokenizer.json,
    # chatvec_report.json, a staging name), and an output file named like that would collide. Shards that
    # lost all their tensors (extract leaves non-float ones out) are dropped and the rest renumbered.
    groups = [g for g in ([plans[n] for n in f.tensors if n in plans] for f in source.files) if g]
    if len(groups) <= 1:
        return [OutputShard(SINGLE_NAME, groups[0] if groups else [])], True
    return [OutputShard(shard_name(i + 1, len(groups)), g) for i, g in enumerate(groups)], False


def _pack(tensors: list[TensorPlan], max_shard_size: int):
    groups: list[list[TensorPlan]] = [[]]
    size = 0
    for t in tensors:
        if groups[-1] and size + t.out_nbytes > max_shard_size:
            groups.append([])
            size = 0
        groups[-1].append(t)
        size += t.out_nbytes
    if len(groups) == 1:
        return [OutputShard(SINGLE_NAME, groups[0])], True
    n = len(groups)
    return [OutputShard(shard_name(i + 1, n), g) for i, g in enumerate(groups)], False


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


def split_work(sizes: list[int], rank: int, world: int, devices: int) -> tuple[list[int], list[list[int]]]:
    """This rank's shards (all of them without torchrun), and those split over its devices."""
    mine = partition(sizes, world)[rank] if world > 1 else list(range(len(sizes)))
    groups = [[mine[i] for i in g] for g in partition([sizes[i] for i in mine], devices)]
    return mine, groups
