"""Hugging Face Hub model ids as local directories: the cache first, then a download of only what a merge reads.

    >>> resolve("Qwen/Qwen2-0.5B-Instruct@main", role="chat")  # path: ~/.cache/huggingface/hub/models--Qwen--...
    Resolved(path='.../snapshots/<sha>', repo_id='Qwen/Qwen2-0.5B-Instruct', revision='main', commit='<sha>')

huggingface_hub is optional: imported only to resolve an id; when missing, an InputError says how to install it.
HF_ENDPOINT, HF_HUB_CACHE (or HF_HOME) and HF_HUB_OFFLINE are read at each call, not once at its import.
"""

from __future__ import annotations

import fnmatch
import glob
import json
import os
import re
from dataclasses import dataclass

from ..errors import InputError
from ..filenames import CONFIG_NAME, CONFIG_PATTERNS, INDEX_NAME, SINGLE_NAME, TOKENIZER_PATTERNS

# Besides its weights, a merge needs the files its output carries (filenames.CONFIG_PATTERNS and
# TOKENIZER_PATTERNS: config and generation config, tokenizer files of every kind, chat templates, processor
# configs, *.py custom modeling code) and README.md, the model card the output's card starts from. Only
# top-level files: subfolders hold other formats or copies (original/, onnx/, gguf/). README.md alone may be
# missing from a cached snapshot.
HUB_PATTERNS = (*CONFIG_PATTERNS, *TOKENIZER_PATTERNS, "README.md")
OPTIONAL_FILES = ("README.md",)
# The weights: one format, (single file, index), in the order transformers (and read/checkpoint.py) reads them:
# a single file wins over an index. With an index only
# the shards it names are fetched, so never consolidated*.safetensors, variants (model.fp16.safetensors), *.gguf,
# *.onnx, *.msgpack, *.h5 or original/*; PyTorch .bin only when the repo has no safetensors weights.
WEIGHT_FILES = ((INDEX_NAME, SINGLE_NAME), ("pytorch_model.bin.index.json", "pytorch_model.bin"))  # (index, single)

DEFAULT_ENDPOINT = "https://huggingface.co"
DEFAULT_REVISION = "main"
API_TIMEOUT_S = 10  # the repo lookup: a firewalled host falls back to the cache in 10 s, not the OS's TCP timeout
_SHA = re.compile(r"[0-9a-f]{40}")
# huggingface_hub.utils.validate_repo_id's rules for each part (ASCII letters, digits, '_', '-', '.'; starts and
# ends with a letter, digit or '_'; at most 96), namespace required: a bare word is far more often a mistyped
# local directory than one of the few legacy un-namespaced models (which redirect to namespaced ids anyway).
_PART = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?"
_HUB_ID = re.compile(rf"{_PART}/{_PART}")
_LOGIN = "for a gated or private model, log in (`hf auth login`, formerly `huggingface-cli login`) or set HF_TOKEN"


@dataclass(frozen=True)
class Resolved:
    """Where a model reference was found.

    path: the directory to open (the reference itself when it is a local path, else a cache snapshot).
    repo_id, revision: the Hub id and the revision asked for ('main' when none); None for a local path.
    commit: the snapshot's commit sha, for the output's report and model card; None for a local path.
    """

    path: str
    repo_id: str | None = None
    revision: str | None = None
    commit: str | None = None


class _Incomplete(InputError):
    """A cached snapshot that lacks needed files: reported even when the Hub was asked and could not answer."""


def looks_like_hub_id(ref: str) -> bool:
    """'org/name' or 'org/name@revision' by huggingface_hub's repo id rules, namespace required.

    >>> looks_like_hub_id("meta-llama/Llama-2-7b-hf@main"), looks_like_hub_id("./models/chat")
    (True, False)
    """
    repo_id, at, revision = ref.partition("@")
    bad = "--" in repo_id or ".." in repo_id or repo_id.endswith(".git") or (at and not revision)
    return bool(_HUB_ID.fullmatch(repo_id)) and not bad


def resolve_model(ref: str, revision: str | None = None, *, role: str = "model") -> str:
    """A local directory for `ref`: a path that exists locally always wins (returned as is); otherwise a Hub id
    ('org/name', optionally 'org/name@revision') resolved through huggingface_hub: from the local cache
    (HF_HOME, HF_HUB_CACHE honoured; HF_HUB_OFFLINE=1 honoured: cache only) and, when missing there and online,
    by downloading only the files a merge needs. Raises InputError saying where it looked and what to do.

    revision: a branch, tag or commit sha (or '@revision' in ref; both, and different, is an error).
    role: the input's name in error messages ('base', 'chat', 'cp').

    >>> resolve_model("models/chat")  # an existing directory: returned as is, huggingface_hub not imported
    'models/chat'
    """
    return resolve(ref, revision, role=role).path


def resolve(ref: str, revision: str | None = None, *, role: str = "model") -> Resolved:
    """resolve_model's answer with its provenance: the Hub id, the revision and the snapshot's commit."""
    label = ref if role == "model" else f"{role}: {ref}"
    if os.path.exists(ref):
        if revision:
            raise InputError(f"{label}: is a local path, so revision {revision!r} cannot apply; pass the Hub id "
                             "instead, or leave the revision out")  # fmt: skip
        return Resolved(ref)
    repo_id, at, ref_revision = ref.partition("@")
    if at and revision and ref_revision and revision != ref_revision:
        raise InputError(f"{label}: names revision {ref_revision!r} but revision {revision!r} was also given; "
                         "give one")  # fmt: skip
    if not looks_like_hub_id(ref):
        raise InputError(f"{label}: no such file or directory, and not a Hugging Face model id (looked for "
                         f"{os.path.abspath(ref)}; an id is 'org/name' or 'org/name@revision')")  # fmt: skip
    try:
        import huggingface_hub  # noqa: F401
    except ImportError:
        raise InputError(f"{label}: looks like a Hugging Face model id, but huggingface_hub is not installed; "
                         "pip install 'huggingface_hub>=0.23', or pass a local directory") from None  # fmt: skip
    hub = _Hub(label, os.path.abspath(ref), repo_id, ref_revision or revision or DEFAULT_REVISION)
    if hub.offline or _SHA.fullmatch(hub.revision):  # a cached commit never changes: no need to ask the Hub
        try:
            return hub.from_cache()
        except InputError:
            if hub.offline:
                raise
    return hub.download()


def _cache_dir() -> str:
    """huggingface_hub.constants' order, read now: HF_HUB_CACHE, HUGGINGFACE_HUB_CACHE, HF_HOME/hub, XDG."""
    env = os.environ
    xdg = env.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    home = env.get("HF_HOME") or os.path.join(xdg, "huggingface")
    cache = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE") or os.path.join(home, "hub")
    return os.path.expandvars(os.path.expanduser(cache))


class _Hub:
    """One id being resolved: where it is looked for, and the two ways to get it."""

    def __init__(self, label: str, local: str, repo_id: str, revision: str):
        self.label, self.local, self.repo_id, self.revision = label, local, repo_id, revision
        self.cache, self.endpoint = _cache_dir(), (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
        self.offline = any(os.environ.get(v, "").upper() in ("1", "ON", "YES", "TRUE")
                           for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))  # fmt: skip
        self.storage = os.path.join(self.cache, "models--" + repo_id.replace("/", "--"))

    def fail(self, what: str, fix: str, kind: type[InputError] = InputError) -> InputError:
        mode = "offline (HF_HUB_OFFLINE=1)" if self.offline else "online"
        return kind(f"{self.label}: {what}; tried local path {self.local} (not found), cache {self.cache}, "
                    f"endpoint {self.endpoint}, {mode}; {fix}")  # fmt: skip

    def download(self) -> Resolved:
        """Asks the Hub for the revision's commit and file list, then fetches only the needed files."""
        from huggingface_hub import HfApi, hf_hub_download, snapshot_download

        try:
            info = HfApi(endpoint=self.endpoint).model_info(self.repo_id, revision=self.revision, timeout=API_TIMEOUT_S)
        except Exception as exc:
            error = self._map(exc)  # re-raises what it does not know: a bug, not an input problem
            if _is_class(exc, "RevisionNotFoundError"):
                raise error from None
            try:  # the Hub is down, unreachable or refuses: a cached copy still serves (as snapshot_download does)
                return self.from_cache()
            except InputError as cached:
                raise (cached if isinstance(cached, _Incomplete) else error) from None
        commit, files = info.sha, {s.rfilename for s in info.siblings or ()}
        at = {"revision": commit, "cache_dir": self.cache, "endpoint": self.endpoint}
        try:  # an index first, to fetch only the shards it names
            wanted = self._wanted(files, lambda i: _index_shards(hf_hub_download(self.repo_id, i, **at)), commit)
            path = snapshot_download(self.repo_id, allow_patterns=[glob.escape(name) for name in wanted], **at)
        except Exception as exc:
            raise self._map(exc) from None
        if self.revision != commit:
            self._record_ref(commit)
        self._check(path, wanted, commit)
        return Resolved(path, self.repo_id, self.revision, commit)

    def from_cache(self) -> Resolved:
        """The cached snapshot of the revision, checked complete against its file listing when one is cached."""
        from huggingface_hub import snapshot_download

        try:  # huggingface_hub finds the snapshot (refs/<revision> -> snapshots/<commit>); the check is ours
            path = snapshot_download(self.repo_id, revision=self.revision, cache_dir=self.cache,
                                     local_files_only=True, allow_patterns=[CONFIG_NAME])  # fmt: skip
        except Exception as exc:
            path = getattr(exc, "snapshot_path", None)  # IncompleteSnapshotError (config.json missing): ours says so
            if path is None and _is_class(exc, "LocalEntryNotFoundError"):
                raise self.fail(f"revision {self.revision!r} is not in the cache ({self._cached()})",
                                ("unset HF_HUB_OFFLINE to download it, " if self.offline else "")
                                + "check the id and revision, or pass a local directory") from None  # fmt: skip
            if path is None:
                raise self._map(exc) from None
        commit, listed = os.path.basename(path), self._cached_listing(os.path.basename(path))
        here = lambda name: _index_shards(os.path.join(path, name)) if os.path.isfile(os.path.join(path, name)) else []  # noqa: E731, fmt: skip
        wanted = self._wanted(listed or set(os.listdir(path)), here, commit, None if listed else path)
        self._check(path, wanted, commit)
        return Resolved(path, self.repo_id, self.revision, commit)

    def _wanted(self, files: set[str], index_shards, commit: str, snapshot: str | None = None) -> list[str]:
        """The top-level files to fetch or find: HUB_PATTERNS' and one weight format's (see WEIGHT_FILES).
        files: the repo's listing, or (snapshot given) the snapshot's own files, where what is absent is missing."""
        top = sorted(f for f in files if "/" not in f)
        wanted = [f for f in top if any(fnmatch.fnmatch(f, p) for p in HUB_PATTERNS)]
        for index, single in WEIGHT_FILES:
            if single in files:
                return [*wanted, single]
            if index in files:
                shards = index_shards(index)
                absent = [s for s in shards if s not in files]
                if absent and snapshot is None:
                    raise self.fail(f"{index} of commit {commit} names shard {absent[0]}, which the repo does not "
                                    "have", "pick another revision, or tell the model's authors")  # fmt: skip
                return [*wanted, index, *shards]
        if snapshot is not None:
            raise self._incomplete(snapshot, commit, f"no {SINGLE_NAME}, {INDEX_NAME} or PyTorch weights")
        found = ", ".join(f for f in top if not f.startswith(".")) or "no files"
        raise self.fail(f"commit {commit} has no weights in safetensors or PyTorch format (it has: {found})",
                        f"pass a model with {SINGLE_NAME} or {INDEX_NAME} and its shards")  # fmt: skip

    def _check(self, path: str, wanted: list[str], commit: str) -> None:
        missing = [f for f in wanted if f not in OPTIONAL_FILES and not os.path.isfile(os.path.join(path, f))]
        if missing:
            shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
            raise self._incomplete(path, commit, f"{shown} missing")

    def _incomplete(self, path: str, commit: str, what: str) -> InputError:
        return self.fail(f"the cached snapshot {path} (commit {commit}) is incomplete: {what} (a download was "
                         "interrupted or fetched only some files)",
                         "unset HF_HUB_OFFLINE and run again to complete it" if self.offline
                         else "run again to complete it", _Incomplete)  # fmt: skip

    def _cached_listing(self, commit: str) -> set[str] | None:
        """The commit's full file list, if an earlier snapshot_download cached it (recent huggingface_hub)."""
        try:
            from huggingface_hub import get_cached_repo_tree

            return {f.path for f in get_cached_repo_tree(self.repo_id, revision=commit, cache_dir=self.cache)}
        except Exception:  # older huggingface_hub, or no listing cached: the snapshot's own files must do
            return None

    def _cached(self) -> str:
        """What the cache holds for this repo, for an error message."""
        refs = os.path.join(self.storage, "refs")
        names = sorted(os.path.relpath(os.path.join(d, f), refs) for d, _, fs in os.walk(refs) for f in fs)
        return f"cached revisions of {self.repo_id}: {', '.join(names) or 'none'}"

    def _record_ref(self, commit: str) -> None:
        """refs/<branch or tag> -> commit, as snapshot_download writes it, so that an offline run finds it."""
        ref = os.path.join(self.storage, "refs", self.revision)
        tmp = f"{ref}.{os.getpid()}.tmp"  # written whole, then renamed: a concurrent reader never sees half a sha
        try:
            os.makedirs(os.path.dirname(ref), exist_ok=True)
            with open(tmp, "w") as f:
                f.write(commit)
            os.replace(tmp, ref)
        except OSError:  # a read-only cache: the next run asks the Hub again
            pass

    def _map(self, exc: Exception) -> InputError:
        """huggingface_hub's and the network's exceptions as one-line InputErrors; anything else is re-raised."""
        if isinstance(exc, InputError):
            return exc
        status, page = getattr(getattr(exc, "response", None), "status_code", None), f"{self.endpoint}/{self.repo_id}"
        if _is_class(exc, "GatedRepoError"):
            return self.fail("the model is gated", f"accept its conditions at {page}, then {_LOGIN}")
        if _is_class(exc, "RepositoryNotFoundError") or status == 401:
            return self.fail("no such model on the Hub (or it is private)",
                             f"check the id or pass a local directory; {_LOGIN}")  # fmt: skip
        if _is_class(exc, "RevisionNotFoundError"):
            return self.fail(f"no revision {self.revision!r} of {self.repo_id} on the Hub",
                             f"check the branch, tag or commit at {page}")  # fmt: skip
        if status is not None:
            return self.fail(f"the Hub answered HTTP {status} ({_first_line(exc)})",
                             "try again later, check HF_ENDPOINT, or pass a local directory")  # fmt: skip
        if isinstance(exc, OSError) or _is_class(exc, "TransportError", "RequestException"):
            return self.fail(f"could not reach the Hub ({type(exc).__name__}: {_first_line(exc)}) and the model is "
                             "not cached", "check the network and HF_ENDPOINT, or pass a local directory")  # fmt: skip
        raise exc


def _is_class(exc: BaseException, *names: str) -> bool:
    """By class name: no import needed, and the same across huggingface_hub's and HTTP clients' versions."""
    return any(c.__name__ in names for c in type(exc).__mro__)


def _first_line(exc: BaseException) -> str:
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)


def _index_shards(index_path: str) -> list[str]:
    """The shard files a weight index names, each a plain file name (as read/checkpoint.py requires)."""
    try:
        with open(index_path, encoding="utf-8") as f:
            weight_map = json.load(f).get("weight_map")
    except (OSError, ValueError, AttributeError) as exc:
        raise InputError(f"{index_path}: cannot read the weight index: {exc}") from None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise InputError(f"{index_path}: 'weight_map' must map tensor names to shard file names")
    shards = sorted(set(weight_map.values()))
    bad = [s for s in shards if os.path.basename(s) != s or s in ("", ".", "..")]
    if bad:
        raise InputError(f"{index_path}: names shard {bad[0]!r}; shard names must be plain file names")
    return shards
