"""The README's in-memory examples run as written, each in a fresh directory."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def examples() -> list[str]:
    """The python block right after each <!-- in-memory --> marker."""
    text = open(README, encoding="utf-8").read()
    return re.findall(r"<!-- in-memory -->\n```python\n(.*?)```", text, re.S)


def test_the_readme_has_the_three_forms():
    found = examples()
    assert len(found) == 3
    for name in ("merged_tensors", "merge_into", "HeldMerge"):
        assert any(name in block for block in found), name


@pytest.mark.parametrize("index", range(3))
def test_each_example_runs_as_written(tmp_path, index):
    pytest.importorskip("transformers")
    block = examples()[index]
    r = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"README example {index + 1}:\n{block}\n{r.stderr[-3000:]}"
    assert r.stdout.strip(), block
