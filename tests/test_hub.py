"""Hub ids resolved to local directories (read/hub.py), with no network: a cache laid out as huggingface_hub lays
it out, and a local HTTP server standing in for the Hub.

The fake Hub serves what huggingface_hub's snapshot_download and hf_hub_download call (read from its source, 2.4.0):

    GET  /api/models/ORG/NAME[/revision/REV]  model_info: {"id", "sha", "siblings": [{"rfilename"}], "private",
                                              "downloads", "likes", "tags" (required by huggingface_hub < 1)}
    GET  /api/models/ORG/NAME/tree/SHA        list_repo_tree (recursive): [{"type": "file", "path", "size", "oid"}]
    HEAD /ORG/NAME/resolve/REV/FILE           file metadata: X-Repo-Commit, ETag (the blob's name in the cache),
                                              Content-Length
    GET  /ORG/NAME/resolve/REV/FILE           the bytes, with the same headers

and answers an unknown repo, revision or file with 404 and X-Error-Code RepoNotFound, RevisionNotFound or
EntryNotFound, which huggingface_hub turns into its exceptions. Older huggingface_hub (0.23 to 1.x, checked by
hand against this file) asks model_info again with the commit instead of listing the tree: served too.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import pytest

pytest.importorskip("huggingface_hub", reason="huggingface_hub is an optional dependency (Hub ids only)")

import huggingface_hub  # noqa: E402
from huggingface_hub import constants  # noqa: E402
from huggingface_hub.utils import HFValidationError, validate_repo_id  # noqa: E402

from chatvec_fast.errors import InputError  # noqa: E402
from chatvec_fast.read.checkpoint import open_checkpoint  # noqa: E402
from chatvec_fast.read.hub import Resolved, looks_like_hub_id, resolve, resolve_model  # noqa: E402
from chatvec_fast.testing.synthetic import SHAPES, write_llama  # noqa: E402

AUX = {
    "tokenizer.json": b'{"model": {"vocab": {"<s>": 1, "</s>": 2}}}',
    "tokenizer_config.json": b'{"eos_token": "</s>", "chat_template": "{{ messages }}"}',
    "special_tokens_map.json": b'{"eos_token": "</s>"}',
    "tokenizer.model": b"sentencepiece",
    "README.md": b"---\nlicense: apache-2.0\n---\n# A tiny chat model\n",
    "modeling_tiny.py": b"# custom modeling code\n",
}
# In the repo, never wanted: other formats and copies of the weights, subfolders, git files.
UNWANTED = {
    "model.gguf": b"GGUF",
    "model.onnx": b"onnx",
    "pytorch_model.bin": b"pickle",
    "consolidated.safetensors": b"copy",
    "flax_model.msgpack": b"flax",
    "tf_model.h5": b"h5",
    "original/params.json": b"{}",
    "original/tokenizer.model": b"sp",
    "onnx/model.safetensors": b"copy",
    ".gitattributes": b"*.safetensors filter=lfs\n",
}


def llama_files(tmp_path, role="chat", shard_bytes=100_000, seed=0) -> dict[str, bytes]:
    """A tiny real model (sharded: an index and its shards) plus tokenizer files, README and custom code."""
    directory = str(tmp_path / f"src-{role}-{seed}-{shard_bytes}")
    write_llama(directory, role, SHAPES["tiny"], shard_bytes=shard_bytes, seed=seed)
    return {**{name: read(os.path.join(directory, name)) for name in os.listdir(directory)}, **AUX}


def read(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def commit_of(files: dict[str, bytes]) -> str:
    h = hashlib.sha1()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + hashlib.sha1(files[name]).digest())
    return h.hexdigest()


# --- a cache laid out as huggingface_hub lays it out -------------------------------------------------------------


def write_cache(cache, repo_id, files, refs=("main",), symlinks=True) -> str:
    """CACHE/models--ORG--NAME/{blobs/SHA256, snapshots/COMMIT/FILE -> ../../blobs/SHA256, refs/REF}."""
    storage = os.path.join(str(cache), "models--" + repo_id.replace("/", "--"))
    commit = commit_of(files)
    snapshot = os.path.join(storage, "snapshots", commit)
    for name, data in files.items():
        target = os.path.join(snapshot, name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if symlinks:
            blob = os.path.join(storage, "blobs", hashlib.sha256(data).hexdigest())
            os.makedirs(os.path.dirname(blob), exist_ok=True)
            with open(blob, "wb") as f:
                f.write(data)
            os.symlink(os.path.relpath(blob, os.path.dirname(target)), target)
        else:
            with open(target, "wb") as f:
                f.write(data)
    for ref in refs:
        os.makedirs(os.path.join(storage, "refs"), exist_ok=True)
        with open(os.path.join(storage, "refs", ref), "w") as f:
            f.write(commit)
    return snapshot


@pytest.fixture
def hub_env(tmp_path, monkeypatch):
    """HF_HOME and HF_HUB_CACHE in tmp_path, online, no endpoint override, no proxies; the cache directory."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT", "HUGGINGFACE_HUB_CACHE", "XDG_CACHE_HOME",
                 "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    # huggingface_hub reads HF_HUB_OFFLINE once, at import: keep a runner's setting from blocking the fake Hub.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return tmp_path / "cache"


@pytest.fixture
def offline(hub_env, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return hub_env


@pytest.mark.parametrize("symlinks", [True, False], ids=["blobs", "plain-files"])
def test_offline_cache_resolves_to_the_snapshot(offline, tmp_path, symlinks):
    files = llama_files(tmp_path)
    snapshot = write_cache(offline, "org/chat", files, symlinks=symlinks)
    got = resolve("org/chat", role="chat")
    assert got == Resolved(snapshot, "org/chat", "main", commit_of(files))
    assert len(open_checkpoint(got.path).tensors) == 21
    assert resolve_model("org/chat@main") == snapshot


def test_offline_cache_by_tag_and_by_commit(offline, tmp_path):
    old, new = llama_files(tmp_path, seed=1), llama_files(tmp_path, seed=2)
    old_snapshot = write_cache(offline, "org/chat", old, refs=("v1",))
    new_snapshot = write_cache(offline, "org/chat", new, refs=("main",))
    assert resolve_model("org/chat") == new_snapshot
    assert resolve_model("org/chat", "v1") == resolve_model("org/chat@v1") == old_snapshot
    assert resolve("org/chat", commit_of(old)).commit == commit_of(old)


def test_hf_home_is_honoured_without_hf_hub_cache(offline, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_CACHE")
    snapshot = write_cache(tmp_path / "hf_home" / "hub", "org/chat", llama_files(tmp_path))
    assert resolve_model("org/chat") == snapshot


def test_offline_revision_not_cached_says_where_it_looked(offline, tmp_path):
    write_cache(offline, "org/chat", llama_files(tmp_path))
    with pytest.raises(InputError) as e:
        resolve_model("org/chat@v2", role="chat")
    msg = str(e.value)
    assert msg.startswith("chat: org/chat@v2: revision 'v2' is not in the cache (cached revisions of org/chat: main)")
    for part in (str(offline), "https://huggingface.co", "offline (HF_HUB_OFFLINE=1)", "unset HF_HUB_OFFLINE",
                 os.path.abspath("org/chat@v2")):  # fmt: skip
        assert part in msg
    assert "\n" not in msg
    with pytest.raises(InputError, match="cached revisions of org/other: none"):
        resolve_model("org/other")


def test_a_ref_whose_snapshot_was_deleted_is_not_called_cached(offline, tmp_path):
    """refs/main names a commit whose snapshot folder is gone: the message says so, not 'cached revisions: main'."""
    import shutil

    snapshot = write_cache(offline, "org/chat", llama_files(tmp_path))
    shutil.rmtree(snapshot)
    with pytest.raises(InputError) as e:
        resolve_model("org/chat", role="chat")
    msg = str(e.value)
    assert "revision 'main' is not in the cache" in msg and f"its snapshot {os.path.basename(snapshot)[:12]}" in msg
    assert "is missing" in msg and "cached revisions of org/chat: main)" not in msg


def test_offline_cache_with_a_missing_shard_is_incomplete(offline, tmp_path):
    files = llama_files(tmp_path)
    shards = sorted(n for n in files if n.startswith("model-"))
    assert len(shards) >= 2
    snapshot = write_cache(offline, "org/chat", {n: d for n, d in files.items() if n != shards[-1]})
    with pytest.raises(InputError, match=rf"snapshot {snapshot} \(commit \w+\) is incomplete: {shards[-1]} missing"):
        resolve_model("org/chat")


def test_offline_cache_without_weights_is_incomplete(offline, tmp_path):
    write_cache(offline, "org/chat", {"config.json": b"{}", **AUX})
    with pytest.raises(InputError, match="is incomplete: no model.safetensors"):
        resolve_model("org/chat")


# --- a local HTTP server standing in for the Hub -----------------------------------------------------------------


class FakeHub(ThreadingHTTPServer):
    """Repos by id: {"refs": {name: commit}, "commits": {commit: {file: bytes}}}; every request is logged."""

    daemon_threads = True
    request_queue_size = 64  # snapshot_download opens 8 connections at once; past the default 5, SYNs wait 1 s

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.repos: dict[str, dict] = {}
        self.refuse: dict[str, tuple[int, dict, bool]] = {}  # repo -> (status, headers, files only)
        self.log: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def add(self, repo_id: str, files: dict[str, bytes], refs=("main",)) -> str:
        repo = self.repos.setdefault(repo_id, {"refs": {}, "commits": {}})
        commit = commit_of(files)
        repo["commits"][commit] = files
        repo["refs"].update(dict.fromkeys(refs, commit))
        return commit

    def fetched(self) -> set[str]:
        """The files whose bytes were requested (GET .../resolve/REV/FILE)."""
        return {p.split("/resolve/", 1)[1].split("/", 1)[1] for m, p in self.log if m == "GET" and "/resolve/" in p}


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_HEAD(self):
        self.answer(body=False)

    def do_GET(self):
        self.answer(body=True)

    def answer(self, body: bool):
        hub: FakeHub = self.server
        path = urlsplit(self.path).path
        with hub.lock:
            hub.log.append((self.command, unquote(path)))
        parts = path.strip("/").split("/")
        api = parts[:2] == ["api", "models"]
        repo_id = "/".join(parts[2:4] if api else parts[:2])
        rest = parts[4:] if api else parts[2:]
        repo = hub.repos.get(repo_id)
        if repo_id in hub.refuse and (not api or not hub.refuse[repo_id][2]):
            return self.send(*hub.refuse[repo_id][:2])
        if repo is None:
            return self.send(404, {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"})
        revision = unquote(rest[1]) if len(rest) >= 2 else "main"
        commit = repo["refs"].get(revision) or (revision if revision in repo["commits"] else None)
        if commit is None:
            return self.send(404, {"X-Error-Code": "RevisionNotFound", "X-Error-Message": "Invalid rev id"})
        files = repo["commits"][commit]
        if api and rest[:1] == ["tree"]:
            tree = [{"type": "file", "path": n, "size": len(d), "oid": hashlib.sha1(d).hexdigest()}
                    for n, d in files.items()]  # fmt: skip
            return self.send(200, {}, json.dumps(tree).encode(), body)
        if api:
            info = {"id": repo_id, "sha": commit, "private": False, "downloads": 0, "likes": 0, "tags": [],
                    "siblings": [{"rfilename": n} for n in files]}  # fmt: skip
            return self.send(200, {}, json.dumps(info).encode(), body)
        if rest[:1] != ["resolve"] or unquote("/".join(rest[2:])) not in files:
            return self.send(404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit})
        data = files[unquote("/".join(rest[2:]))]
        headers = {"X-Repo-Commit": commit, "ETag": f'"{hashlib.sha256(data).hexdigest()}"'}
        return self.send(200, headers, data, body, content_type="application/octet-stream")

    def send(self, status, headers, data=b"", body=True, content_type="application/json"):
        self.send_response(status)
        for key, value in {**headers, "Content-Type": content_type, "Content-Length": str(len(data))}.items():
            self.send_header(key, value)
        self.end_headers()
        if body:
            self.wfile.write(data)


@pytest.fixture
def hub(hub_env, monkeypatch):
    server = FakeHub()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    yield server
    server.shutdown()
    server.server_close()


def test_download_fetches_only_what_a_merge_needs(hub, hub_env, tmp_path, monkeypatch):
    files = llama_files(tmp_path)
    commit = hub.add("org/chat", {**files, **UNWANTED})
    got = resolve("org/chat", role="chat")
    assert got == Resolved(str(hub_env / "models--org--chat" / "snapshots" / commit), "org/chat", "main", commit)
    assert hub.fetched() == set(files)  # weights (index + shards), config files, tokenizer files, README, *.py
    assert not hub.fetched() & set(UNWANTED)
    assert len(open_checkpoint(got.path).tensors) == 21
    for name, data in files.items():
        assert read(os.path.join(got.path, name)) == data, name
    # Now cached, with refs/main recorded: offline finds it without a request.
    before = len(hub.log)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve("org/chat") == got
    assert len(hub.log) == before


def test_offline_checks_a_download_against_its_cached_listing(hub, tmp_path, monkeypatch):
    if not hasattr(huggingface_hub, "get_cached_repo_tree"):
        pytest.skip("this huggingface_hub has no get_cached_repo_tree: only the weights are checked (tests above)")
    hub.add("org/chat", llama_files(tmp_path))
    path = resolve_model("org/chat")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    os.remove(os.path.join(path, "README.md"))  # the model card alone may be missing
    assert resolve_model("org/chat") == path
    os.remove(os.path.join(path, "tokenizer.model"))
    with pytest.raises(InputError, match="incomplete: tokenizer.model missing.*; unset HF_HUB_OFFLINE and run again"):
        resolve_model("org/chat")


def test_download_takes_bin_weights_only_without_safetensors(hub, tmp_path):
    files = {"config.json": b'{"model_type": "llama"}', "pytorch_model.bin": b"pickle", "model.gguf": b"GGUF", **AUX}
    hub.add("org/old", files)
    path = resolve_model("org/old")
    assert hub.fetched() == set(files) - {"model.gguf"}
    assert sorted(os.listdir(path)) == sorted(set(files) - {"model.gguf"})


def test_download_single_file_safetensors(hub, tmp_path):
    files = llama_files(tmp_path, shard_bytes=None)
    assert "model.safetensors" in files
    hub.add("org/single", {**files, "pytorch_model.bin": b"pickle", "model.fp16.safetensors": b"variant"})
    assert len(open_checkpoint(resolve_model("org/single")).tensors) == 21
    assert hub.fetched() == set(files)


def test_revision_picks_the_commit(hub, hub_env, tmp_path):
    old = hub.add("org/chat", llama_files(tmp_path, seed=1), refs=("v1",))
    new = hub.add("org/chat", llama_files(tmp_path, seed=2), refs=("main",))
    assert resolve("org/chat").commit == new
    assert resolve("org/chat@v1").commit == old
    assert resolve("org/chat", "v1").path.endswith(old)
    assert resolve("org/chat", old).commit == old
    assert read(hub_env / "models--org--chat" / "refs" / "v1").decode() == old
    before = len(hub.log)
    assert resolve("org/chat", new).commit == new  # a cached commit: the Hub is not asked
    assert len(hub.log) == before
    with pytest.raises(InputError, match="no revision 'v9' of org/chat on the Hub; tried"):
        resolve_model("org/chat@v9")


def test_unknown_repo_is_one_clear_line(hub):
    with pytest.raises(InputError) as e:
        resolve_model("org/missing", role="base")
    msg = str(e.value)
    assert msg.startswith("base: org/missing: no such model on the Hub (or it is private); tried local path")
    assert hub.endpoint in msg and "hf auth login" in msg and "HF_TOKEN" in msg and "\n" not in msg
    assert e.value.__cause__ is None and e.value.__suppress_context__


@pytest.mark.parametrize(
    "refusal, message",
    [
        ((403, {"X-Error-Code": "GatedRepo", "X-Error-Message": "Access restricted"}, True), "the model is gated; .*"
         "endpoint http://127.0.0.1:\\d+, online; accept its conditions at http://127.0.0.1:\\d+/org/gated, then "
         "for a gated or private model, log in"),
        ((500, {}, False), r"the Hub answered HTTP 500 \(.*\); tried local path"),
    ],
    ids=["gated", "server-error"],
)  # fmt: skip
def test_refusals_are_one_clear_line(hub, tmp_path, refusal, message):
    hub.add("org/gated", llama_files(tmp_path))
    hub.refuse["org/gated"] = refusal
    with pytest.raises(InputError, match=message) as e:
        resolve_model("org/gated")
    assert "\n" not in str(e.value)


def test_an_index_naming_a_shard_the_repo_lacks(hub, tmp_path):
    files = llama_files(tmp_path)
    lost = sorted(n for n in files if n.startswith("model-"))[-1]
    hub.add("org/broken", {n: d for n, d in files.items() if n != lost})
    with pytest.raises(InputError, match=f"model.safetensors.index.json of commit \\w+ names shard {lost}, which the"):
        resolve_model("org/broken")


def test_unreachable_hub_falls_back_to_the_cache(hub_env, tmp_path, monkeypatch):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(InputError, match=rf"could not reach the Hub \(\w+: .*endpoint http://127.0.0.1:{port}, online"):
        resolve_model("org/chat")
    snapshot = write_cache(hub_env, "org/chat", llama_files(tmp_path))
    assert resolve_model("org/chat") == snapshot


def test_local_path_named_like_an_id_wins_without_a_request(hub, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_llama("org/chat", "chat", SHAPES["tiny"])
    hub.add("org/chat", llama_files(tmp_path))
    assert resolve("org/chat") == Resolved("org/chat")
    assert hub.log == []
    with pytest.raises(InputError, match="is a local path, so revision 'v1' cannot apply"):
        resolve_model("org/chat", "v1")


def test_a_local_path_run_imports_neither_huggingface_hub_nor_torch(tmp_path):
    code = (
        "import sys\nfrom chatvec_fast.read.hub import resolve_model\n"
        f"assert resolve_model({str(tmp_path)!r}) == {str(tmp_path)!r}\n"
        "print(sorted(m for m in ('huggingface_hub', 'torch') if m in sys.modules))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr


@pytest.mark.parametrize(
    "ref", ["nowhere", "./models/chat", "/abs/dir", "org/name/sub", "org/na--me", "org/name.git", "org/name@", "a/-b"]
)
def test_neither_a_path_nor_an_id(ref):
    with pytest.raises(InputError, match=r": no such file or directory, and not a Hugging Face model id \(looked for"):
        resolve_model(ref)


def test_revision_given_twice_and_different(hub_env):
    with pytest.raises(InputError, match="names revision 'v1' but revision 'v2' was also given"):
        resolve_model("org/chat@v1", "v2")


@pytest.mark.parametrize(
    "ref", ["org/name", "Org-1/Name_2.v3", "meta-llama/Llama-2-7b-hf", "a/b", "org/name@refs/pr/1", "org/x@" + "0" * 40]
)
def test_looks_like_hub_id(ref):
    assert looks_like_hub_id(ref)
    validate_repo_id(ref.partition("@")[0])


@pytest.mark.parametrize("ref", ["name", "org/", "/name", "org/-name", "org/name-", "org/na..me", "org/n me", "café/x"])
def test_does_not_look_like_hub_id(ref):
    assert not looks_like_hub_id(ref)
    if "/" in ref.strip("/") and ref[0] != "/" and ref.isascii():  # huggingface_hub agrees, bar its no-namespace ids
        with pytest.raises(HFValidationError):
            validate_repo_id(ref)


# --- the commands take Hub ids ----------------------------------------------------------------------------------


def test_merge_from_hub_ids_in_the_cache_records_their_commits(offline, tmp_path):
    """--base/--chat/--cp as Hub ids (offline, from the cache): the same model as from local directories, and
    the report records each input's id, revision and commit."""
    from conftest import cli, model_args

    snapshots, local = {}, {}
    for role in ("base", "chat", "cp"):
        files = llama_files(tmp_path, role=role, shard_bytes=60_000 if role == "cp" else 100_000)
        snapshots[role] = write_cache(offline, f"org/{role}", files, refs=("main", "v1"))
        local[role] = snapshots[role]
    env = {"HF_HUB_CACHE": str(offline), "HF_HUB_OFFLINE": "1"}
    ids = {"base": "org/base", "chat": "org/chat@v1", "cp": "org/cp"}
    r = cli("merge", *model_args(ids), "--out", tmp_path / "hub", "--revision", "main", "--quiet", env=env)
    assert r.returncode == 0, r.stderr
    r = cli("merge", *model_args(local), "--out", tmp_path / "local", "--quiet")
    assert r.returncode == 0, r.stderr
    report = json.load(open(tmp_path / "hub" / "chatvec_report.json"))
    assert report["sources"]["chat"] == {"id": "org/chat", "revision": "v1", "commit": os.path.basename(
        snapshots["chat"])}  # fmt: skip
    assert report["sources"]["base"]["revision"] == "main"
    card = open(tmp_path / "hub" / "README.md").read()
    assert "base_model:\n- org/cp\n- org/chat\n- org/base\n" in card and "| v1 (" in card
    assert "--chat org/chat@v1" in card
    for name in sorted(os.listdir(tmp_path / "local")):
        if name.endswith(".safetensors"):
            import torch
            from safetensors.torch import load_file

            a, b = load_file(str(tmp_path / "hub" / name)), load_file(str(tmp_path / "local" / name))
            assert a.keys() == b.keys() and all(a[k].view(-1).view(torch.int16).equal(b[k].view(-1).view(torch.int16))
                                                for k in a)  # fmt: skip
    r = cli("merge", "--base", "org/nope", "--chat", "org/chat", "--cp", "org/cp", "--out", tmp_path / "x", env=env)
    assert r.returncode == 1 and "org/nope" in r.stderr and "Traceback" not in r.stderr, r.stderr
