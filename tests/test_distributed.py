"""Several processes via torchrun (gloo, CPU ranks): the same output directory as one process."""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
import sys

import pytest

from chatvec_fast.plan.layout import partition

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]


def same_tree(a, b):
    cmp = filecmp.dircmp(a, b)
    assert not cmp.left_only and not cmp.right_only and not cmp.diff_files, (
        cmp.left_only,
        cmp.right_only,
        cmp.diff_files,
    )
    for sub in cmp.common_dirs:
        same_tree(os.path.join(a, sub), os.path.join(b, sub))
    _, mismatch, errors = filecmp.cmpfiles(a, b, cmp.common_files, shallow=False)
    assert not mismatch and not errors


def run(cmd, env=None):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})


def chatvec(*args):
    return [*TORCHRUN, "-m", "chatvec_fast", *args]


def test_partition_balances_bytes_and_keeps_order():
    groups = partition([10, 1, 1, 1, 7, 3, 5], 3)
    assert sorted(i for g in groups for i in g) == list(range(7))
    loads = [sum([10, 1, 1, 1, 7, 3, 5][i] for i in g) for g in groups]
    assert max(loads) - min(loads) <= 3 and all(g == sorted(g) for g in groups)
    assert partition([5], 4) == [[0], [], [], []]


@pytest.mark.parametrize("command", ["merge", "sweep"])
def test_torchrun_two_ranks_equal_one_process(triple, tmp_path, command):
    paths = triple(cp_vocab=600)
    common = ["--base", paths["base"], "--chat", paths["chat"], "--cp", paths["cp"], "--quiet"]
    extra = ["--alpha", "0.7"] if command == "merge" else ["--alphas", "0.5,1.0"]
    single = run([sys.executable, "-m", "chatvec_fast", command, *common, "--out", str(tmp_path / "one"), *extra])
    assert single.returncode == 0, single.stderr
    ranks = run(chatvec(command, *common, "--out", str(tmp_path / "two"), *extra))
    assert ranks.returncode == 0, ranks.stderr[-3000:]
    same_tree(tmp_path / "one", tmp_path / "two")


def test_a_failing_rank_fails_the_run_with_no_output(triple, tmp_path):
    paths = triple()
    out = tmp_path / "out"
    r = run(
        chatvec(
            "merge", "--base", paths["base"], "--chat", paths["chat"], "--cp", paths["cp"], "--out", str(out), "--quiet"
        ),
        env={"CHATVEC_FAULT": "compute@rank1"},
    )
    assert r.returncode != 0
    assert "injected failure" in r.stderr and "another rank failed" in r.stderr
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="the torchrun script is not on PATH")
def test_torchrun_script_entry_point(triple, tmp_path):
    """The documented form: torchrun --nproc-per-node N -m chatvec_fast merge ..."""
    paths = triple()
    r = run(
        [
            "torchrun",
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "chatvec_fast",
            "merge",
            "--base",
            paths["base"],
            "--chat",
            paths["chat"],
            "--cp",
            paths["cp"],
            "--out",
            str(tmp_path / "o"),
            "--quiet",
        ]
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "o" / "chatvec_report.json").exists()


def test_torchrun_merges_fp8_checkpoints_like_one_process(tmp_path):
    """FP8 base and chat (block scales in their own shards' order) with a bf16 cp, and an FP8 cp re-quantized
    (--dtype fp8): two ranks write the same bytes as one process."""
    from chatvec_fast.testing.quantize import layout_quantizer
    from chatvec_fast.testing.synthetic import FP8Layout, make_triple

    block = FP8Layout("block", layout_quantizer, (32, 48))  # tiny's 64 x 176 weights: partial blocks
    for name, fp8, extra in (("bf16-cp", {"base": block, "chat": block}, []),
                             ("fp8-cp", {"base": block, "chat": block, "cp": block}, ["--dtype", "fp8"])):  # fmt: skip
        paths = make_triple(str(tmp_path / name), "tiny", shard_bytes=40_000, fp8=fp8)
        common = ["--base", paths["base"], "--chat", paths["chat"], "--cp", paths["cp"], "--quiet", "--alpha", "0.7"]
        single = run([sys.executable, "-m", "chatvec_fast", "merge", *common, "--out", str(tmp_path / f"{name}-1"),
                      *extra])  # fmt: skip
        assert single.returncode == 0, single.stderr
        ranks = run(chatvec("merge", *common, "--out", str(tmp_path / f"{name}-2"), *extra))
        assert ranks.returncode == 0, ranks.stderr[-3000:]
        same_tree(tmp_path / f"{name}-1", tmp_path / f"{name}-2")
        check = run([sys.executable, "-m", "chatvec_fast", "verify", str(tmp_path / f"{name}-2"), "--all"])
        assert check.returncode == 0, check.stdout + check.stderr
