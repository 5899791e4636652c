"""No user file is ever at risk: name collisions, --overwrite, directories that appear during a run, planted
symlinks, mount points, finished outputs and concurrent runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
from conftest import assert_one_line_error, chatvec_command, cli, file_digests, model_args, open_every_output

import chatvec_fast
from chatvec_fast.errors import OutputError
from chatvec_fast.write.names import lock_path, set_aside_path, staging_path

SLOW = {"CHATVEC_CHUNK_ELEMENTS": "1000", "CHATVEC_SLOW": "write:0.02"}  # a run of a few seconds


def merge(paths, out, **kwargs):
    return chatvec_fast.merge(paths["base"], paths["chat"], paths["cp"], str(out), kwargs.pop("alpha", 0.5), **kwargs)


# -- 3. file-name collisions ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "names",
    [
        ["README.md", "chatvec_report.json", ".chatvec-done"],
        ["model.safetensors.index.json.safetensors", ".out.chatvec-partial", "model-00009-of-00009.safetensors"],
        ["model-00002-of-00006.safetensors", "model-00001-of-00006.safetensors", "model-00003-of-00003.safetensors"],
    ],
    ids=["report-and-staging-names", "index-and-sibling-names", "shifted-shard-names"],
)
def test_cp_shards_named_like_our_files_are_renamed_not_clobbered(tokenized_triple, tmp_path, names):
    """Output shard names are ours: cp's shard names never reach the output, where they could collide."""
    paths = tokenized_triple
    rename_shards(paths["cp"], names)
    before = file_digests(*paths.values())
    out = tmp_path / "out"
    r = cli("merge", *model_args(paths), "--out", out, "--quiet")
    assert r.returncode == 0, r.stderr
    count = len(set(json.load(open(out / "model.safetensors.index.json"))["weight_map"].values()))
    shard_files = sorted(f for f in os.listdir(out) if f.endswith(".safetensors"))
    assert shard_files == [f"model-{i + 1:05d}-of-{count:05d}.safetensors" for i in range(count)]
    assert sorted(os.listdir(out)) == sorted([*shard_files, "README.md", "chatvec_report.json", "config.json",
                                              "generation_config.json", "model.safetensors.index.json",
                                              "tokenizer.json", "tokenizer_config.json"])  # fmt: skip
    assert open_every_output(out) == count
    assert cli("verify", out, "--all").returncode == 0
    assert file_digests(*paths.values()) == before


@pytest.mark.parametrize("name", ["tokenizer.json", "config.json", "chat_template.jinja", "vocab.txt"])
def test_a_shard_named_like_a_config_or_tokenizer_file_is_refused(tokenized_triple, tmp_path, name):
    """Such a shard would be read as that file (by us, by transformers): refused, naming it."""
    paths = tokenized_triple
    for existing in ("tokenizer.json", "config.json"):
        if existing == name:
            os.unlink(os.path.join(paths["cp"], existing))
    rename_shards(paths["cp"], [name])
    r = cli("merge", *model_args(paths), "--out", tmp_path / "out")
    assert_one_line_error(r, os.path.join(paths["cp"], name), "rename")


def rename_shards(model_dir, names):
    """Renames the first len(names) shards of a sharded checkpoint (and its index) to `names`."""
    index_path = os.path.join(model_dir, "model.safetensors.index.json")
    index = json.load(open(index_path))
    shards = sorted(set(index["weight_map"].values()))
    renames = dict(zip(shards, names + shards[len(names) :]))
    tmp = {old: os.path.join(model_dir, f"tmp-{i}") for i, old in enumerate(shards)}
    for old, path in tmp.items():
        os.rename(os.path.join(model_dir, old), path)
    for old, path in tmp.items():
        os.rename(path, os.path.join(model_dir, renames[old]))
    index["weight_map"] = {k: renames[v] for k, v in index["weight_map"].items()}
    json.dump(index, open(index_path, "w"))


# -- 10. --overwrite replaces only a model output --------------------------------------------------------


@pytest.mark.parametrize("intruder", ["notes.txt", "data/"], ids=["a-note", "a-sub-folder"])
def test_overwrite_refuses_a_directory_with_user_files(triple, tmp_path, intruder):
    paths = triple()
    out = tmp_path / "out"
    assert cli("merge", *model_args(paths), "--out", out, "--quiet").returncode == 0
    if intruder.endswith("/"):
        (out / intruder).mkdir()
        (out / intruder / "results.csv").write_text("mine")
    else:
        (out / intruder).write_text("mine")
    before = file_digests(out)
    r = cli("merge", *model_args(paths), "--out", out, "--overwrite", "--alpha", "0.7")
    assert_one_line_error(r, intruder.rstrip("/"), "not a model output")
    assert file_digests(out) == before


def test_overwrite_replaces_our_own_output(triple, tmp_path):
    paths = triple()
    out = tmp_path / "out"
    assert cli("merge", *model_args(paths), "--out", out, "--quiet").returncode == 0
    r = cli("merge", *model_args(paths), "--out", out, "--overwrite", "--alpha", "0.7", "--quiet")
    assert r.returncode == 0, r.stderr
    assert json.load(open(out / "chatvec_report.json"))["alpha"] == 0.7
    assert not os.path.lexists(set_aside_path(str(out)))


# -- 11. a directory created at --out during the run ---------------------------------------------------------


def test_a_directory_appearing_at_out_during_the_run_is_left_alone(triple, tmp_path, monkeypatch):
    paths = triple()
    out = tmp_path / "out"
    from chatvec_fast import faults

    def someone_else_writes_first(path):
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, "their-file.txt"), "w") as f:
            f.write("not yours")

    with faults.hooked("committing", someone_else_writes_first), pytest.raises(OutputError, match="changed") as info:
        merge(paths, out)
    assert (out / "their-file.txt").read_text() == "not yours" and os.listdir(out) == ["their-file.txt"]
    kept = staging_path(str(out))
    assert kept in str(info.value) and os.path.isfile(os.path.join(kept, "chatvec_report.json"))
    assert "move it" in chatvec_fast.api.failure_hint(info.value)


# -- 12. planted symlinks at the paths we write ---------------------------------------------------------------


@pytest.mark.parametrize("which", ["staging", "lock", "set-aside"])
def test_a_symlink_planted_beside_the_output_is_refused(triple, tmp_path, which):
    paths = triple()
    out = tmp_path / "out"
    target = {"staging": staging_path, "lock": lock_path, "set-aside": set_aside_path}[which](str(out))
    point_to = paths["cp"] if which != "lock" else os.path.join(paths["cp"], "config.json")
    os.symlink(point_to, target)
    before = file_digests(*paths.values())
    r = cli("merge", *model_args(paths), "--out", out, "--resume", "--quiet")
    assert_one_line_error(r, target)
    assert file_digests(*paths.values()) == before and not out.exists()


def test_a_staging_directory_we_did_not_make_is_never_removed(triple, tmp_path):
    paths = triple()
    out = tmp_path / "out"
    foreign = staging_path(str(out))
    os.makedirs(foreign)
    with open(os.path.join(foreign, "precious.txt"), "w") as f:
        f.write("keep me")
    for extra in ([], ["--resume"]):
        r = cli("merge", *model_args(paths), "--out", out, *extra)
        assert_one_line_error(r, foreign, "not made by chatvec")
        assert open(os.path.join(foreign, "precious.txt")).read() == "keep me"


# -- 13. --out on another filesystem ----------------------------------------------------------------------


def test_an_empty_mount_point_as_out_is_refused_before_work(triple, tmp_path):
    paths = triple()
    mount = tmp_path / "mnt"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (not root, or no mount permission)")
    try:
        t0 = time.perf_counter()
        r = cli("merge", *model_args(paths), "--out", mount, "--quiet")
        assert_one_line_error(r, str(mount), "mount point")
        assert os.listdir(mount) == [] and time.perf_counter() - t0 < 30
        assert cli("merge", *model_args(paths), "--out", mount / "merged", "--quiet").returncode == 0
    finally:
        subprocess.run(["umount", str(mount)])


def test_another_filesystem_is_detected_by_device(triple, tmp_path, monkeypatch):
    """Where no tmpfs can be mounted: a directory whose device differs from its parent's."""
    paths = triple()
    out = tmp_path / "out"
    out.mkdir()
    real_stat = os.stat

    def stat(path, *args, **kwargs):
        st = real_stat(path, *args, **kwargs)
        if os.path.abspath(path) == str(out):
            return os.stat_result((st.st_mode, st.st_ino, st.st_dev + 1, *tuple(st)[3:]))
        return st

    monkeypatch.setattr(os, "stat", stat)
    with pytest.raises(OutputError, match="mount point"):
        merge(paths, out)


# -- 18. resume of a finished output; two runs at once ---------------------------------------------------------


def test_resume_of_a_finished_output_says_already_complete(triple, tmp_path):
    paths = triple()
    out = tmp_path / "out"
    assert cli("merge", *model_args(paths), "--out", out, "--quiet").returncode == 0
    before = file_digests(out)
    r = cli("merge", *model_args(paths), "--out", out, "--resume", "--quiet")
    assert r.returncode == 0 and "already complete" in r.stderr, r.stderr
    assert file_digests(out) == before
    r = cli("merge", *model_args(paths), "--out", out, "--resume", "--alpha", "0.9")  # another command
    assert r.returncode != 0 and "--overwrite" in r.stderr


def test_the_loser_of_two_concurrent_runs_stops_before_work(triple, tmp_path):
    paths = triple()
    out = tmp_path / "out"
    first = subprocess.Popen(chatvec_command("merge", paths, out, "--quiet"), env={**os.environ, **SLOW},
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.time() + 20
        while not os.path.exists(staging_path(str(out))) and time.time() < deadline:
            time.sleep(0.05)
        t0 = time.perf_counter()
        r = cli("merge", *model_args(paths), "--out", out, "--quiet")
        assert time.perf_counter() - t0 < 10
        assert_one_line_error(r, "another chatvec run")
        assert "--resume" not in r.stderr  # the partial output is the other run's, not this one's
        assert "no output was written" in r.stderr
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
