"""Options declared once (settings.Settings) and checked whole before any work: the API's keywords, the CLI's
flags, the messages that name them in the caller's spelling; the output paths a run may not take."""

from __future__ import annotations

import inspect
import os

import pytest
from conftest import assert_one_line_error, cli, model_args

import chatvec_fast
from chatvec_fast.cli.arguments import build_parser
from chatvec_fast.settings import Settings


@pytest.mark.parametrize("command", ["merge", "sweep", "extract", "apply", "tune"])
def test_the_cli_and_the_api_take_the_same_options_with_the_same_defaults(command):
    """Both are built from Settings: the parser's destinations and defaults, the API's keyword parameters."""
    parser = build_parser()
    sub = next(a for a in parser._subparsers._group_actions[0].choices.items() if a[0] == command)[1]
    cli_dests = {a.dest: a for a in sub._actions}
    api_params = {p.name: p for p in inspect.signature(getattr(chatvec_fast, command)).parameters.values()
                  if p.kind == p.KEYWORD_ONLY}  # fmt: skip
    for f in Settings.for_command(command):
        assert f.name in api_params, f"{command}() lacks {f.name}"
        assert api_params[f.name].default == Settings.default(f.name, command)
        if f.metadata["cli"] is None:
            continue
        action = cli_dests[f.name]
        if isinstance(action.default, bool) and action.option_strings[0] in ("--quiet", "--no-model-card"):
            continue  # flags that turn an option off
        want = [] if f.metadata["cli"].get("action") == "append" else Settings.default(f.name, command)
        assert action.default == want, (command, f.name, action.default, want)


def test_an_unknown_keyword_is_named_with_the_nearest_option(triple, tmp_path):
    paths = triple()
    with pytest.raises(TypeError, match=r"'alpah_for'.*did you mean alpha_for"):
        chatvec_fast.merge(paths["base"], paths["chat"], paths["cp"], str(tmp_path / "o"), alpah_for=["x=0"])
    with pytest.raises(TypeError, match="added_tokens is an option of merge, sweep"):
        chatvec_fast.apply(paths["chat"], paths["cp"], str(tmp_path / "o"), added_tokens="drop")


def test_api_errors_name_the_python_keyword(triple, tmp_path):
    paths = triple()
    args = (paths["base"], paths["chat"], paths["cp"], str(tmp_path / "o"))
    with pytest.raises(ValueError, match=r"^vocab_mismatch 'rows'"):
        chatvec_fast.merge(*args, vocab_mismatch="rows")
    with pytest.raises(ValueError, match=r"^max_shard_size: cannot read size"):
        chatvec_fast.merge(*args, max_shard_size="5 bananas")
    with pytest.raises(ValueError, match=r"^overwrite 'yes': expected True or False"):
        chatvec_fast.merge(*args, overwrite="yes")
    with pytest.raises(ValueError, match=r"^alpha_for 'x=half': 'half' is not a number"):
        chatvec_fast.merge(*args, alpha_for=["x=half"])
    r = cli("merge", *model_args(paths), "--out", tmp_path / "o", "--alpha-for", "x=half")
    assert_one_line_error(r, "--alpha-for 'x=half': 'half' is not a number")


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--backend", "triton"], "needs a CUDA GPU"),
        (["--devices", "cuda:0", "--backend", "native"], "--devices cuda:0 needs a device backend"),
        (["--devices", "gpu0"], "expected distinct CUDA devices"),
        (["--threads", "99999999999"], "from 1 to 4096"),
        (["--gpu-memory", "lots"], "--gpu-memory: cannot read size"),
    ],
)
def test_engine_options_are_checked_before_any_input_is_resolved(tmp_path, args, needle):
    """The inputs are Hub ids that cannot resolve here: the option's error must come first, at once."""
    env = {"TRITON_INTERPRET": "0", "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty-cache")}
    r = cli("merge", "--base", "org/base", "--chat", "org/chat", "--cp", "org/cp", "--out", tmp_path / "o", *args,
            env=env)  # fmt: skip
    assert_one_line_error(r, needle)
    assert "org/" not in r.stderr.split("error:", 1)[1].splitlines()[0]


def test_merge_given_alphas_points_to_sweep(triple, tmp_path):
    paths = triple()
    r = cli("merge", *model_args(paths), "--out", tmp_path / "o", "--alphas", "0.5,1")
    assert_one_line_error(r, "chatvec sweep", "--alphas 0.5,1")


@pytest.mark.parametrize("out", ["", " "], ids=["empty", "blank"])
def test_an_empty_out_is_refused(triple, tmp_path, out):
    """An unset shell variable (`--out "$OUT"`) must not mean the current directory."""
    paths = triple()
    r = cli("merge", *model_args(paths), "--out", out, "--overwrite", cwd=tmp_path)
    assert_one_line_error(r, "output path is empty")
    assert os.listdir(tmp_path) == [] or set(os.listdir(tmp_path)) == {"models"}


@pytest.mark.parametrize("out", [".", "..", "{cwd}"], ids=["dot", "parent", "absolute"])
def test_the_current_directory_is_never_the_output(triple, tmp_path, out):
    """Replacing it (even with --overwrite, even a model directory) would pull it from under the shell."""
    paths = triple()
    work = tmp_path / "work"
    work.mkdir()
    (work / "model.safetensors").write_bytes(b"\0" * 8)
    r = cli("merge", *model_args(paths), "--out", out.format(cwd=work), "--overwrite", cwd=work)
    assert_one_line_error(r, "the current directory")
    assert sorted(os.listdir(work)) == ["model.safetensors"]


@pytest.mark.parametrize("command", ["merge", "sweep"])
def test_a_failed_run_removes_the_directories_it_created_and_only_those(triple, tmp_path, command):
    paths = triple()
    (tmp_path / "kept").mkdir()
    out = tmp_path / "kept" / "new" / "deeper" / "out"
    extra = ["--alphas", "0.5,1"] if command == "sweep" else []
    r = cli(command, *model_args(paths), "--out", out, *extra, env={"CHATVEC_FAULT": "write:ENOSPC#2"})
    assert_one_line_error(r, "No space left on device")
    assert os.listdir(tmp_path / "kept") == []  # new/, deeper/ and out/ (a sweep's parent) are gone; kept/ stays


def test_small_rates_and_counts_read_as_words():
    from chatvec_fast.units import format_rate, plural

    assert format_rate(3.87e9) == "3.87 GB/s" and format_rate(4.2e6) == "4.20 MB/s" and format_rate(512) == "512 B/s"
    assert plural(1, "tensor") == "1 tensor" and plural(0, "tensor") == "0 tensors"


def test_auto_never_picks_a_backend_unmeasured_where_it_runs(monkeypatch):
    """On a machine with CUDA and triton, file-to-file work still takes the native kernel: no GPU measurement
    of the device backends says they keep up (docs/PERFORMANCE.md). They run when asked for by name, or when
    the destination is GPU memory."""
    import torch

    from chatvec_fast import _native
    from chatvec_fast.backends import availability, get_backend, resolve

    monkeypatch.setattr(availability, "nvidia_driver", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    monkeypatch.delenv("CHATVEC_BACKEND", raising=False)
    assert resolve("auto") == ("native" if _native.available else "torch")
    assert get_backend("auto").name == resolve("auto")
    assert resolve("auto", destination="device") == "triton" and resolve("triton") == "triton"
    monkeypatch.setenv("CHATVEC_BACKEND", "torch")
    assert resolve("auto") == "torch"
