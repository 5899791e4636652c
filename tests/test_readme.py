"""The README's Python blocks run as written: each in order, in one process (like a notebook), in a temporary
directory holding the models they name (base, chat, cp, and code: a second fine-tune of base), made tiny."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def python_blocks() -> list[str]:
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_the_readme_has_python_blocks():
    assert python_blocks()


def test_every_python_block_of_the_readme_runs(tmp_path):
    from chatvec_fast.testing.synthetic import make_triple

    paths = make_triple(str(tmp_path / "made"), "tiny", shard_bytes={"base": None, "chat": 100_000, "cp": 60_000})
    for role, path in paths.items():
        shutil.move(path, tmp_path / role)
    code = make_triple(str(tmp_path / "made-code"), "tiny", seed=7)["chat"]  # another model of the same shape
    shutil.move(code, tmp_path / "code")
    script = "\n\n".join(python_blocks())
    r = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"{r.stdout[-2000:]}\n{r.stderr[-4000:]}"


def test_the_readme_documents_every_command_line_option():
    """settings.Settings declares the options; the README's option table names every flag it gives the CLI."""
    from chatvec_fast.settings import Settings

    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    table = "\n".join(line for line in text.splitlines() if line.startswith("| `--"))
    flags = {Settings.flag(f.name) for c in ("merge", "extract") for f in Settings.for_command(c)} - {None}
    missing = sorted(flag for flag in flags if f"`{flag}" not in table and f"/ `{flag}" not in table)
    assert not missing, f"README's option table lacks {missing}"
