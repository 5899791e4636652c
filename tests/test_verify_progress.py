"""verify trusts nothing it did not check (every file, the report itself) and streams --all in bounded memory;
progress shows on terminals of any width and in logs."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import assert_one_line_error, cli, model_args

from chatvec_fast.progress import LOG_INTERVAL, Progress
from chatvec_fast.testing.synthetic import to_bf16_bits
from chatvec_fast.write.shard import ShardFile, build_header


@pytest.fixture
def merged(tokenized_triple, tmp_path):
    out = tmp_path / "out"
    assert cli("merge", *model_args(tokenized_triple), "--out", out, "--quiet").returncode == 0
    assert cli("verify", out).returncode == 0
    return out


NEGATIVE_ROW = {"token": "x", "chat_row": -1, "cp_row": 2}


def edit_report(out, edit):
    path = out / "chatvec_report.json"
    report = json.load(open(path))
    edit(report)
    json.dump(report, open(path, "w"))


# -- 16. verify checks every file against the report -----------------------------------------------------------


def test_a_report_without_files_is_not_ok(merged):
    """Before: 'every shard matches its recorded sha256 -- OK' with the file list deleted."""
    edit_report(merged, lambda r: r.pop("files"))
    assert_one_line_error(cli("verify", merged, "--checksums-only"), "files")


@pytest.mark.parametrize(
    "change,needle",
    [
        (lambda out: (out / "notes.txt").write_text("extra"), "notes.txt: in the directory but not in the report"),
        (lambda out: os.unlink(out / "tokenizer.json"), "tokenizer.json: missing"),
        (lambda out: (out / "tokenizer_config.json").write_text("{}"), "tokenizer_config.json"),
        (lambda out: (out / "config.json").write_text((out / "config.json").read_text() + " "), "config.json"),
        (lambda out: (out / "model.safetensors.index.json").write_text("{}"), "model.safetensors.index.json"),
    ],
    ids=["extra-file", "missing-tokenizer", "changed-tokenizer-config", "changed-config", "changed-index"],
)
@pytest.mark.parametrize("mode", [[], ["--checksums-only"]], ids=["full", "checksums-only"])
def test_every_file_is_checked_against_the_report(merged, change, needle, mode):
    change(merged)
    r = cli("verify", merged, *mode)
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stdout + r.stderr
    assert needle in r.stdout + r.stderr


@pytest.mark.parametrize(
    "corrupt,needle",
    [
        (lambda p: p.write_text("{not json"), "cannot read the report"),
        (lambda p: p.write_text("[]"), "not a chatvec-fast report"),
        (lambda p: edit_report(p.parent, lambda r: r.pop("report_format")), "report format 1"),
        (lambda p: edit_report(p.parent, lambda r: r.update(command="frobnicate")), "command"),
        (lambda p: edit_report(p.parent, lambda r: r.update(inputs={"base": 3})), "inputs"),
        (lambda p: edit_report(p.parent, lambda r: r.update(alpha="0.5")), "alpha"),
        (lambda p: edit_report(p.parent, lambda r: r["options"].pop("skip")), "options"),
        (lambda p: edit_report(p.parent, lambda r: r.update(special_token_rows=[NEGATIVE_ROW])), "special_token_rows"),
    ],
    ids=["not-json", "not-an-object", "older-format", "command", "inputs", "alpha", "options", "negative-row"],
)  # fmt: skip
def test_a_malformed_or_older_report_is_a_clear_error(merged, corrupt, needle):
    corrupt(merged / "chatvec_report.json")
    assert_one_line_error(cli("verify", merged), "chatvec_report.json", needle)


def test_recorded_special_rows_must_match_the_tokenizers(tokenized_triple, tmp_path):
    out = tmp_path / "out"
    r = cli("merge", *model_args(tokenized_triple), "--out", out, "--special-tokens-from", "chat", "--quiet")
    assert r.returncode == 0, r.stderr
    edit_report(out, lambda rep: rep["special_token_rows"][0].update(chat_row=7))
    r = cli("verify", out, "--all")
    assert r.returncode == 1 and "tokenizers give" in r.stdout, r.stdout


def write_single_tensor_model(directory, values, name="w"):
    os.makedirs(directory)
    data = to_bf16_bits(values)
    header, _ = build_header([(name, "BF16", values.shape, data.nbytes)], {"format": "pt"})
    f = ShardFile(os.path.join(directory, "model.safetensors"), header, len(header) + data.nbytes)
    f.write(data, len(header))
    json.dump({"model_type": "llama"}, open(os.path.join(directory, "config.json"), "w"))


def test_verify_all_streams_a_large_tensor(tmp_path):
    """A 64 MiB tensor: verify --all used to hold ~20 copies of it (1.3 GB here); now pieces of 32K elements."""
    n = 32 << 20
    rng = np.random.default_rng(0)
    base = rng.standard_normal(n, dtype=np.float32) * np.float32(0.02)
    paths = {}
    for role, noise in (("base", 0.0), ("chat", 0.002), ("cp", 0.002)):
        paths[role] = str(tmp_path / role)
        values = base + rng.standard_normal(n, dtype=np.float32) * np.float32(noise) if noise else base
        write_single_tensor_model(paths[role], values)
    out = tmp_path / "out"
    assert cli("merge", *model_args(paths), "--out", out, "--quiet").returncode == 0
    verify = [sys.executable, "-m", "chatvec_fast", "verify", str(out), "--all", "--quiet"]
    launcher = (  # a small parent: its children's peak RSS is the verify's own
        "import resource, subprocess, sys\n"
        f"r = subprocess.run({verify!r}, stdout=subprocess.DEVNULL)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024, r.returncode)\n"
    )
    rss, code = subprocess.run([sys.executable, "-c", launcher], capture_output=True, text=True).stdout.split()
    assert code == "0"
    # 70 MB here: the interpreter and numpy, and 32K-element pieces on each thread (0.39 GB with the torch reference)
    assert int(rss) < 150e6, f"verify --all of a 64 MiB tensor peaked at {int(rss) / 1e6:.0f} MB"


# -- 17. progress ---------------------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_progress_logs_a_line_every_interval_when_not_a_terminal():
    """nohup, Slurm, 2>log: before, nothing until the end."""
    stream, clock = io.StringIO(), FakeClock()
    bar = Progress(100_000_000_000, enabled=True, stream=stream, clock=clock)
    for _ in range(50):  # 50 s at 1 GB/s
        clock.now += 1.0
        bar.advance(1_000_000_000)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 50 // int(LOG_INTERVAL) + 1, lines
    assert "GB/s" in lines[0] and "ETA" in lines[0] and "%" in lines[0] and "\r" not in stream.getvalue()


class NarrowTerminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("columns", [20, 45, 200])
def test_the_bar_fits_any_terminal_width(monkeypatch, columns):
    monkeypatch.setenv("COLUMNS", str(columns))
    stream, clock = NarrowTerminal(), FakeClock()
    bar = Progress(10_000_000_000, enabled=True, stream=stream, clock=clock)
    for _ in range(20):
        clock.now += 0.5
        bar.advance(500_000_000)
    bar.close()
    drawn = [line.replace("\x1b[K", "") for line in stream.getvalue().replace("\n", "\r").split("\r") if line]
    assert drawn and all(len(line) < columns for line in drawn), [len(line) for line in drawn]
    assert all(s.endswith("\x1b[K") for s in stream.getvalue().split("\r")[1:-1] if s), "stale text is erased"
