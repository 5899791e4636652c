"""File-level benchmarks on generated models: chatvec merge and sweep, the naive PyTorch merges, the I/O floor.

Each contender is timed until its output is on disk (a `sync` after the command counts), inputs warm,
output deleted before each round. extra_info records GB/s of (3 inputs + K outputs), peak RSS and, for
merges, the share of elements equal to the correctly rounded float64 result. These run one contender
after another; benchmarks/compare.py alternates them for the README's ratios.
"""

from __future__ import annotations

import os
import shutil
import sys

import pytest
from common import dir_bytes, io_floors, timed, warm
from conftest import HERE, ROUNDS, SMOKE

ALPHA = 0.5
SWEEP = (0.25, 0.5, 0.75, 1.0)


@pytest.fixture(scope="module")
def triple(tmp_path_factory):
    if SMOKE:
        from chatvec_fast.testing.synthetic import make_triple

        return make_triple(str(tmp_path_factory.mktemp("bench-models")), "tiny", shard_bytes=60_000)
    from common import models

    return models(os.environ.get("CHATVEC_BENCH_SIZE", "1b"))


def commands(paths, out) -> dict[str, tuple[list[str], int]]:
    """name -> (command, number of outputs)."""
    py = sys.executable
    b, c, p = paths["base"], paths["chat"], paths["cp"]
    common = ["--base", b, "--chat", c, "--cp", p, "--out", out]
    naive = os.path.join(HERE, "naive_merge.py")
    return {
        "chatvec merge": ([py, "-m", "chatvec_fast", "merge", *common, "--alpha", str(ALPHA), "--quiet"], 1),
        "chatvec sweep K=4": ([py, "-m", "chatvec_fast", "sweep", *common, "--alphas", ",".join(map(str, SWEEP)),
                               "--quiet"], 4),
        "naive PyTorch bf16": ([py, naive, *common, "--alpha", str(ALPHA)], 1),
        "naive PyTorch fp32": ([py, naive, *common, "--alpha", str(ALPHA), "--math", "fp32"], 1),
        **{name: (cmd, 1) for name, cmd in io_floors(paths, out).items()},
    }  # fmt: skip


NAMES = list(commands({"base": "b", "chat": "c", "cp": "p"}, "o"))


@pytest.mark.parametrize("name", NAMES)
def test_files(benchmark, triple, tmp_path, name):
    out = str(tmp_path / "out")
    cmd, k = commands(triple, out)[name]
    results = []

    def setup():
        shutil.rmtree(out, ignore_errors=True)
        warm(triple.values())

    benchmark.pedantic(lambda: results.append(timed(cmd)), setup=setup, rounds=ROUNDS, iterations=1)
    nbytes = sum(dir_bytes(x) for x in triple.values()) + k * dir_bytes(triple["cp"])
    info = {
        "gbps": nbytes / benchmark.stats.stats.median / 1e9,
        "peak_rss_gb": max(r["peak_rss"] for r in results) / 1e9,
    }
    merged = out if k == 1 else os.path.join(out, f"alpha-{ALPHA!r}")
    if not name.startswith("I/O"):
        from exactness import measure

        info.update(measure(triple["base"], triple["chat"], triple["cp"], merged, ALPHA))
        if name.startswith("chatvec"):
            assert info["exact_share"] == 1.0
    benchmark.extra_info.update(info)
    shutil.rmtree(out, ignore_errors=True)
