"""The streaming engine: chunking, backends and write modes give byte-identical output directories."""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys

import pytest
from conftest import chatvec_command, requires_native

from chatvec_fast import _native
from chatvec_fast.api import merge, sweep


def dir_files(d):
    return sorted(os.listdir(d))


def assert_same_dirs(a, b):
    assert dir_files(a) == dir_files(b)
    match, mismatch, errors = filecmp.cmpfiles(a, b, dir_files(a), shallow=False)
    assert not mismatch and not errors, (mismatch, errors)


def merge_with(paths, out, **kwargs):
    return merge(paths["base"], paths["chat"], paths["cp"], str(out), kwargs.pop("alpha", 0.7), **kwargs)


@pytest.fixture
def reference_output(triple, tmp_path):
    paths = triple(cp_vocab=600)
    out = tmp_path / "reference"
    merge_with(paths, out, backend="torch")
    return paths, out


# 1 element a chunk is 169,280 chunks (~37 s here): slow, run by CI; 97 splits every tensor at odd places too.
@pytest.mark.parametrize("chunk_elements", [pytest.param(1, marks=pytest.mark.slow), 97, 1000, 4097, 1 << 20])
def test_chunk_size_does_not_change_the_output(reference_output, tmp_path, chunk_elements):
    """Chunks that split tensors anywhere (1 element, odd sizes) give the same bytes."""
    paths, ref = reference_output
    out = tmp_path / f"chunk{chunk_elements}"
    backend = "native" if _native.available else "torch"
    merge_with(paths, out, backend=backend, chunk_elements=chunk_elements)
    assert_same_dirs(ref, out)


@requires_native
def test_native_and_torch_backends_write_identical_files(reference_output, tmp_path):
    paths, ref = reference_output
    merge_with(paths, tmp_path / "native", backend="native")
    assert_same_dirs(ref, tmp_path / "native")


def test_page_cache_writes_match_direct_writes(reference_output, tmp_path):
    paths, ref = reference_output
    env = dict(os.environ, CHATVEC_DIRECT_IO="0")
    out = tmp_path / "buffered"
    cmd = chatvec_command("merge", paths, out, "--alpha", "0.7", "--quiet")
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert_same_dirs(ref, out)


def test_failure_mid_run_leaves_nothing(triple, tmp_path, monkeypatch):
    paths = triple()
    monkeypatch.setenv("CHATVEC_FAULT", "compute#5")  # the 5th kernel call fails
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="injected"):
        merge_with(paths, out, backend="torch", chunk_elements=1000)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def test_input_truncated_during_the_run_is_an_error(triple, tmp_path, monkeypatch):
    """A file that shrinks after its header was read stops the run (no garbage output)."""
    paths = triple()
    from chatvec_fast import faults
    from chatvec_fast.errors import InputError

    victim = os.path.join(paths["chat"], sorted(f for f in os.listdir(paths["chat"]) if f.endswith(".safetensors"))[-1])

    def truncate_once_open(path):
        if path == victim and os.path.getsize(victim) > 1000:
            os.truncate(victim, 1000)

    with faults.hooked("opened", truncate_once_open), pytest.raises(InputError, match="truncated|changed"):
        merge_with(paths, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_concurrent_run_on_the_same_output_is_refused(triple, tmp_path):
    from chatvec_fast.errors import OutputError
    from chatvec_fast.write.staging import OutputDirectory

    out = tmp_path / "out"
    with OutputDirectory(str(out), {}):
        with pytest.raises(OutputError, match="another chatvec run"):
            with OutputDirectory(str(out), {}):
                pass
    with OutputDirectory(str(out), {}) as again:  # released on exit
        again.commit()
    assert out.is_dir()


def test_sweep_outputs_equal_single_merges(triple, tmp_path):
    """K alphas in one pass (the engine's sweep path) give the same files as K single merges."""
    paths = triple()
    alphas = (0.25, 1.0, -0.5)
    sweep(paths["base"], paths["chat"], paths["cp"], str(tmp_path / "sweep"), alphas)
    for a in alphas:
        single = tmp_path / f"single{a}"
        merge_with(paths, single, alpha=a)
        assert_same_dirs(tmp_path / "sweep" / f"alpha-{a!r}", single)


def test_import_stays_light():
    """`import chatvec_fast` and a native merge's imports pull in neither torch nor triton."""
    code = (
        "import sys, chatvec_fast, chatvec_fast.cli, chatvec_fast.api, chatvec_fast.run;"
        "bad = [m for m in ('torch', 'triton') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
