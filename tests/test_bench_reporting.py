"""What the benchmarks report must not flatter: a miss never prints as 100%, a shard's data hash ignores only its
header, and compare_commits stops on a ref that names no commit before building or running anything."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
sys.path.insert(0, BENCHMARKS)

from common import exact_text  # noqa: E402
from compare_commits import shard_hashes  # noqa: E402


@pytest.mark.parametrize(
    "share, shown",
    [
        (1.0, "100% (0)"),
        (0.5, "50.0000% (3)"),
        (1 - 3.8e-9, "99.9999996% (3)"),  # 1 element of 263 M: at 4 digits it would read 100.0000%
        (1 - 1 / 7e10, "99.999999999% (3)"),  # 1 element of a 70B model's 7e10
    ],
)
def test_exact_text_never_rounds_a_miss_up_to_100(share, shown):
    assert exact_text({"exact_share": share, "max_ulp": 0 if share == 1.0 else 3}) == shown


def test_exact_text_without_a_measurement_is_a_dash():
    assert exact_text(None) == "-"


def test_shard_data_hash_ignores_the_header_and_nothing_else(tmp_path):
    tensors = {"w": torch.randn(37, 5, generator=torch.Generator().manual_seed(7)).to(torch.bfloat16)}
    for name, meta in (("a", {"run": "1"}), ("b", {"run": "2, with a longer header"})):
        (tmp_path / name).mkdir()
        save_file(tensors, str(tmp_path / name / "model.safetensors"), metadata=meta)
    tensors["w"][36, 4] = -tensors["w"][36, 4]  # one element's sign: the last byte pair of the data
    (tmp_path / "c").mkdir()
    save_file(tensors, str(tmp_path / "c" / "model.safetensors"), metadata={"run": "1"})
    a, b, c = (shard_hashes(str(tmp_path / x))["model.safetensors"] for x in "abc")
    assert a["data"] == b["data"] and a["file"] != b["file"]
    assert a["data"] != c["data"] and a["file"] != c["file"]


def test_compare_commits_names_a_bad_ref_before_any_work(tmp_path):
    env = dict(os.environ, CHATVEC_BENCH_DIR=str(tmp_path))
    r = subprocess.run([sys.executable, os.path.join(BENCHMARKS, "compare_commits.py"), "HEAD", "no-such-ref-x1"],
                       env=env, capture_output=True, text=True)  # fmt: skip
    assert r.returncode != 0
    assert "no-such-ref-x1: not a commit of" in r.stderr and "name a commit, tag or branch" in r.stderr
    assert not os.path.exists(tmp_path / "commits")  # HEAD, named first, was neither exported nor built
    assert not os.path.exists(tmp_path / "commits-out")  # no merge ran
    assert not os.path.exists(tmp_path / "tiny") and not os.path.exists(tmp_path / "1b")  # no models made
