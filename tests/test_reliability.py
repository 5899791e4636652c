"""Reliability: kill -9 and resume, Ctrl-C and SIGTERM, a full disk, checksums, hostile paths, the native boundary."""

from __future__ import annotations

import filecmp
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import chatvec_command, default_sigint, file_digests, requires_native
from hypothesis import given, seed, settings
from hypothesis import strategies as st

from chatvec_fast import _native


def same_dir(a, b):
    names = sorted(os.listdir(a))
    assert names == sorted(os.listdir(b))
    _, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
    assert not mismatch and not errors, mismatch


def command(paths, out, *extra, alpha="0.5"):
    return chatvec_command("merge", paths, out, "--alpha", alpha, "--quiet", *extra)


SLOW = {"CHATVEC_CHUNK_ELEMENTS": "1000", "CHATVEC_SLOW": "write:0.02"}  # a ~4 s run of ~200 chunks


def run(cmd, env=None, timeout=120):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


def partial(out) -> str:
    parent, name = os.path.split(str(out))
    return os.path.join(parent, f".{name}.chatvec-partial")


@pytest.fixture
def models(triple, tmp_path):
    paths = triple(cp_vocab=600)
    reference = tmp_path / "reference"
    assert run(command(paths, reference)).returncode == 0
    return paths, reference


@pytest.mark.parametrize("seed_value", [1, 2, 3, 4])
def test_kill_9_at_random_points_then_resume(models, tmp_path, seed_value):
    """SIGKILL mid-run (seeded point), then the same command with --resume: bit-identical to an uninterrupted run."""
    paths, reference = models
    out = tmp_path / "out"
    proc = subprocess.Popen(command(paths, out, "--resume"), env={**os.environ, **SLOW}, preexec_fn=default_sigint,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    time.sleep(random.Random(seed_value).uniform(0.5, 3.5))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before the kill: slow it down"
    assert not out.exists()  # killed: never a finished-looking output
    done = os.path.join(partial(out), ".chatvec-done")
    completed = len(os.listdir(done)) if os.path.isdir(done) else 0
    r = run(command(paths, out, "--resume"))
    assert r.returncode == 0, r.stderr
    assert f"resumed: {completed} of" in r.stderr
    same_dir(reference, out)
    assert not os.path.exists(partial(out))


def test_resume_redoes_a_shard_whose_checksum_no_longer_matches(models, tmp_path):
    paths, reference = models
    out = tmp_path / "out"
    r = run(command(paths, out, "--resume"), env={"CHATVEC_FAULT": "write#40", "CHATVEC_CHUNK_ELEMENTS": "2000"})
    assert r.returncode != 0 and "--resume" in r.stderr
    done = os.path.join(partial(out), ".chatvec-done")
    finished = sorted(f[: -len(".json")] for f in os.listdir(done))
    assert finished, "the fault came too early for this test"
    victim = os.path.join(partial(out), finished[0])
    with open(victim, "r+b") as f:  # corrupt a completed shard: it must be written again
        f.seek(os.path.getsize(victim) - 1)
        f.write(b"\x00" if f.read(1) != b"\x00" else b"\x01")
    r = run(command(paths, out, "--resume"))
    assert r.returncode == 0, r.stderr
    assert f"resumed: {len(finished) - 1} of" in r.stderr
    same_dir(reference, out)


def test_resume_refuses_a_partial_output_of_another_command(models, tmp_path):
    paths, _ = models
    out = tmp_path / "out"
    env = {"CHATVEC_FAULT": "write#30", "CHATVEC_CHUNK_ELEMENTS": "2000"}
    assert run(command(paths, out, "--resume"), env=env).returncode != 0
    r = run(command(paths, out, "--resume", alpha="0.75"))
    assert r.returncode != 0 and "different command" in r.stderr
    assert run(command(paths, out, alpha="0.75")).returncode == 0  # without --resume: start over


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupt_exits_promptly_and_is_resumable(models, tmp_path, sig):
    paths, reference = models
    out = tmp_path / "out"
    proc = subprocess.Popen(command(paths, out), env={**os.environ, **SLOW}, preexec_fn=default_sigint,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    time.sleep(1.2)
    sent = time.perf_counter()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert time.perf_counter() - sent < 5, "did not stop promptly"
    assert proc.returncode == 130 and "interrupted" in err and "--resume" in err, err
    assert not out.exists() and os.path.isdir(partial(out))
    r = run(command(paths, out, "--resume"))
    assert r.returncode == 0, r.stderr
    same_dir(reference, out)


@pytest.mark.parametrize("direct", ["1", "0"], ids=["o_direct", "page_cache"])
def test_disk_full_mid_run(models, tmp_path, direct):
    """ENOSPC on the 25th write: a clean error naming the file, no output, inputs untouched."""
    paths, reference = models
    before = file_digests(*paths.values())
    out = tmp_path / "out"
    env = {"CHATVEC_FAULT": "write:ENOSPC#25", "CHATVEC_CHUNK_ELEMENTS": "2000", "CHATVEC_DIRECT_IO": direct}
    r = run(command(paths, out), env=env)
    assert r.returncode == 1 and "disk is full" in r.stderr and ".safetensors" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists() and not os.path.exists(partial(out))  # nothing to resume without --resume
    r = run(command(paths, out, "--resume"), env=env)
    assert r.returncode == 1 and os.path.isdir(partial(out)) and "--resume" in r.stderr
    assert run(command(paths, out, "--resume")).returncode == 0
    same_dir(reference, out)
    assert file_digests(*paths.values()) == before


def test_real_full_filesystem_is_refused_up_front(models, tmp_path):
    """A small tmpfs (needs root to mount; skipped otherwise): the free-space check names the numbers."""
    paths, _ = models
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (not root, or no mount permission)")
    try:
        r = run(command(paths, mount / "out"))
        assert r.returncode == 1 and "is free there" in r.stderr, r.stderr
        assert os.listdir(mount) == []
    finally:
        subprocess.run(["umount", str(mount)])


def test_checksums_in_report_and_verify_checksums_only(models, tmp_path):
    paths, reference = models
    report = json.load(open(reference / "chatvec_report.json"))
    from chatvec_fast.write.records import sha256_file

    for name, record in report["files"].items():
        assert record["sha256"] == sha256_file(str(reference / name))
    r = run([sys.executable, "-m", "chatvec_fast", "verify", str(reference), "--checksums-only"])
    assert r.returncode == 0 and "OK" in r.stdout
    victim = sorted(n for n in report["files"] if n.endswith(".safetensors"))[2]
    with open(reference / victim, "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0x01]))
    r = run([sys.executable, "-m", "chatvec_fast", "verify", str(reference), "--checksums-only"])
    assert r.returncode == 1 and victim in r.stdout and "sha256" in r.stdout


def test_concurrent_run_is_refused(models, tmp_path):
    paths, _ = models
    out = tmp_path / "out"
    first = subprocess.Popen(command(paths, out), env={**os.environ, **SLOW}, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        time.sleep(1.0)
        r = run(command(paths, out))
        assert r.returncode == 1 and "another chatvec run is writing" in r.stderr
    finally:
        first.wait(timeout=60)
    assert first.returncode == 0
    first_lock = os.path.join(str(tmp_path), ".out.chatvec-lock")
    assert not os.path.exists(first_lock)
    proc = subprocess.Popen(command(paths, tmp_path / "again"), env={**os.environ, **SLOW})
    time.sleep(0.8)
    proc.send_signal(signal.SIGKILL)  # a killed holder does not leave the lock stuck
    proc.wait()
    assert run(command(paths, tmp_path / "again")).returncode == 0


def test_awkward_paths(triple, tmp_path):
    """Spaces, non-ASCII, symlinked inputs, relative paths."""
    paths = triple()
    odd = tmp_path / "dir with spaces ünïcødé"
    odd.mkdir()
    moved = {}
    for role, path in paths.items():
        target = odd / f"{role} model"
        shutil.copytree(path, target)
        link = tmp_path / f"link-{role}"
        link.symlink_to(target)
        moved[role] = str(link)
    r = run(command(moved, odd / "merged ✓"))
    assert r.returncode == 0, r.stderr
    cwd = os.getcwd()
    try:
        os.chdir(odd)
        r = run(command({k: os.path.relpath(v) for k, v in moved.items()}, "rel out"))
        assert r.returncode == 0, r.stderr
    finally:
        os.chdir(cwd)
    same_dir(odd / "merged ✓", odd / "rel out")


@requires_native
@seed(5)
@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    st.integers(0, 64),
    st.lists(st.integers(0, 300), min_size=4, max_size=4),
    st.lists(st.sampled_from(["F32", "F16", "BF16", "F64", "F8_E4M3", "F8_E5M2", "F8_E8M0"]), min_size=4, max_size=4),
    st.lists(st.booleans(), min_size=3, max_size=3),
    st.integers(0, 3),
    st.sampled_from(["merge", "apply", "extract", "convert"]),
)
def test_native_boundary_never_crashes(n, sizes, dtypes, present, k, mode):
    """Random sizes, dtypes, modes and missing operands at the C++ boundary (no validate() in front): a result or
    a ValueError, never a crash."""
    from chatvec_fast.backends.call import KernelCall, Operand

    ops = [Operand(np.zeros(s, np.uint8), d) if p else None for s, d, p in zip(sizes[:3], dtypes, present)]
    outs = [np.zeros(sizes[3], np.uint8) for _ in range(k)]
    vectors = (ops[1],) if mode == "apply" and ops[1] is not None else ()
    call = KernelCall(n, mode, outs, dtypes[3], [[0.5]] * k, base=ops[0], chat=ops[1] if not vectors else None,
                      cp=ops[2], vectors=vectors)  # fmt: skip
    try:
        _native.module.run(call, 1)
    except ValueError:
        pass
