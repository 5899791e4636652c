"""The prepared GPU session (benchmarks/gpu_session.sh) on a machine without CUDA: one line, exit 0, nothing
written, so a session that lands on the wrong machine costs nothing and says why."""

from __future__ import annotations

import os
import subprocess

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the session would run for real")
def test_without_cuda_the_session_says_so_and_exits_0(tmp_path):
    out = tmp_path / "out"
    r = subprocess.run(["bash", os.path.join(ROOT, "benchmarks", "gpu_session.sh")], capture_output=True, text=True,
                       env={**os.environ, "OUT": str(out)}, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().count("\n") == 0 and "no CUDA device" in r.stdout, r.stdout
    assert not out.exists()


def test_the_session_writes_at_most_eight_files():
    """What the session writes under $OUT is what comes back from a GPU machine (at most 8 files): the script names
    each file once."""
    text = open(os.path.join(ROOT, "benchmarks", "gpu_session.sh")).read()
    written = {word for word in text.replace('"', " ").split() if word.startswith("$OUT/")}
    assert 0 < len(written) <= 8, written
