"""Every write site the engine has, failing (ENOSPC), under every command that writes: a one-line error
naming the file, a non-zero exit, nothing half-written left behind, inputs untouched. And stdout closed."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest
from conftest import assert_one_line_error, cli, file_digests, model_args

from chatvec_fast import faults
from chatvec_fast.write.names import lock_path, staging_path

PACKAGE = os.path.dirname(faults.__file__)


def fault_points_in_source() -> set[str]:
    """Every point named at a call of faults.check, durable.writing, or a `point=` argument."""
    found = set()
    for root, _, files in os.walk(PACKAGE):
        for f in files:
            if not f.endswith(".py"):
                continue
            tree = ast.parse(open(os.path.join(root, f), encoding="utf-8").read())
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                name = getattr(node.func, "attr", getattr(node.func, "id", ""))
                args = [*node.args, *(k.value for k in node.keywords if k.arg == "point")]
                strings = [a.value for a in args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
                if name == "check" and strings:
                    found.add(strings[0])
                elif name == "writing" and len(strings) >= 1:
                    found.add(strings[-1])
                elif any(k.arg == "point" for k in node.keywords):
                    found.update(k.value.value for k in node.keywords if k.arg == "point"
                                 and isinstance(k.value, ast.Constant))  # fmt: skip
    return found


def test_every_fault_point_is_registered_and_used():
    """A new write site must be registered (and so covered by the test below); a registered one must exist."""
    in_source = fault_points_in_source()
    assert in_source <= set(faults.POINTS), in_source - set(faults.POINTS)
    assert set(faults.WRITE_POINTS) <= in_source, set(faults.WRITE_POINTS) - in_source


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A tokenized triple and a vector of it: every command has config, tokenizer and index files to write."""
    import conftest

    from chatvec_fast.testing.synthetic import make_triple

    root = tmp_path_factory.mktemp("faults")
    paths = make_triple(str(root / "models"), "tiny", cp_vocab=600, shard_bytes={"base": None, "chat": 100_000,
                                                                                    "cp": 60_000})  # fmt: skip
    shared = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"] + [f"tok{i}" for i in range(5, 512)]
    for role in ("base", "chat"):
        conftest.write_tokenizer(paths[role], shared, shared[:5], "</s>", conftest.CHAT_TEMPLATE if role == "chat"
                                 else None)  # fmt: skip
    conftest.write_tokenizer(paths["cp"], shared + [f"ext{i}" for i in range(512, 600)], shared[:5], "</s>")
    vector = str(root / "vector")
    r = cli("extract", "--base", paths["base"], "--chat", paths["chat"], "--out", vector, "--quiet")
    assert r.returncode == 0, r.stderr
    return {**paths, "vector": vector}


def command(name, inputs, out):
    if name == "merge":
        return ["merge", *model_args({k: inputs[k] for k in ("base", "chat", "cp")}), "--out", out]
    if name == "sweep":
        return ["sweep", *model_args({k: inputs[k] for k in ("base", "chat", "cp")}), "--out", out, "--alphas", "0.5,1"]
    if name == "extract":
        return ["extract", "--base", inputs["base"], "--chat", inputs["chat"], "--out", out]
    return ["apply", "--vector", inputs["vector"], "--cp", inputs["cp"], "--out", out]


COMMANDS = ["merge", "sweep", "extract", "apply"]


@pytest.mark.parametrize("point", faults.WRITE_POINTS)
@pytest.mark.parametrize("name", COMMANDS)
def test_a_full_disk_at_every_write_site(inputs, tmp_path, name, point):
    before = file_digests(*(inputs[k] for k in ("base", "chat", "cp")))
    out = tmp_path / "out"
    r = cli(*command(name, inputs, out), "--quiet", env={"CHATVEC_FAULT": f"{point}:ENOSPC"})
    assert_one_line_error(r, "No space left on device", str(tmp_path))
    assert "disk is full" in r.stderr
    outputs = [out] if name != "sweep" else [out / "alpha-0.5", out / "alpha-1.0"]
    for o in outputs:
        assert not o.exists() or not os.listdir(o), f"{o} was left behind"
        assert not os.path.lexists(staging_path(str(o))) and not os.path.lexists(lock_path(str(o)))
    assert file_digests(*(inputs[k] for k in ("base", "chat", "cp"))) == before
    assert "no output was written" in r.stderr
    r = cli(*command(name, inputs, out), "--quiet")  # the same command, without the fault, then works
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("point", ["write", "marker", "report", "commit"])
def test_a_full_disk_with_resume_keeps_what_is_done(inputs, tmp_path, point):
    out = tmp_path / "out"
    args = command("merge", inputs, out)
    r = cli(*args, "--resume", "--quiet", env={"CHATVEC_FAULT": f"{point}:ENOSPC"})
    assert_one_line_error(r, "No space left on device")
    assert os.path.isdir(staging_path(str(out))) and "--resume" in r.stderr and not out.exists()
    assert cli(*args, "--resume", "--quiet").returncode == 0


@pytest.mark.parametrize("args", [[], ["--dry-run"]], ids=["merge | true", "merge --dry-run | head -1"])
def test_stdout_closed_is_one_line_not_a_traceback(inputs, tmp_path, args):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "chatvec_fast", *map(str, command("merge", inputs, out)), "--quiet", *args]
    reader = "head -c 1 >/dev/null" if args else "true"
    shell = " ".join(f"'{c}'" for c in cmd) + f" | {reader}; exit ${{PIPESTATUS[0]}}"
    r = subprocess.run(["bash", "-c", "sleep 0.2; " + shell], capture_output=True, text=True, timeout=120)
    assert "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr, r.stderr
    if r.returncode != 0:  # the pipe closed before the summary: said once, the work itself stands
        assert r.stderr.count("error:") == 1 and "stdout was closed" in r.stderr, r.stderr
    assert out.exists() != bool(args)
