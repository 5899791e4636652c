"""One Hugging Face Hub id at one revision, as a local snapshot: found in the cache, or downloaded (only the files
a merge reads), and checked complete either way.

HF_ENDPOINT, HF_HUB_CACHE (or HF_HOME) and HF_HUB_OFFLINE are read when a repo is looked up, not at import.
"""

from __future__ import annotations

import fnmatch
import glob
import os
from dataclasses import dataclass

from ..errors import InputError
from ..filenames import (
    BIN_INDEX_NAME,
    BIN_SINGLE_NAME,
    CARD_NAME,
    CONFIG_NAME,
    CONFIG_PATTERNS,
    INDEX_NAME,
    SINGLE_NAME,
    TOKENIZER_PATTERNS,
)
from .hub_errors import IncompleteSnapshot, is_class, map_error
from .json_file import load_json_object

# Besides its weights, a merge needs the files its output carries (filenames.CONFIG_PATTERNS and
# TOKENIZER_PATTERNS: config and generation config, tokenizer files of every kind, chat templates, processor
# configs, *.py custom modeling code) and README.md, the model card the output's card starts from. Only
# top-level files: subfolders hold other formats or copies (original/, onnx/, gguf/). README.md alone may be
# missing from a cached snapshot.
HUB_PATTERNS = (*CONFIG_PATTERNS, *TOKENIZER_PATTERNS, CARD_NAME)
OPTIONAL_FILES = (CARD_NAME,)
# The weights: one format, (index, single file), in the order transformers (and read/checkpoint.py) reads them:
# a single file wins over an index. With an index only the shards it names are fetched, so never
# consolidated*.safetensors, variants (model.fp16.safetensors), *.gguf, *.onnx, *.msgpack, *.h5 or original/*;
# PyTorch .bin only when the repo has no safetensors weights.
WEIGHT_FILES = ((INDEX_NAME, SINGLE_NAME), (BIN_INDEX_NAME, BIN_SINGLE_NAME))

DEFAULT_ENDPOINT = "https://huggingface.co"
API_TIMEOUT_S = 10  # the repo lookup: a firewalled host falls back to the cache in 10 s, not the OS's TCP timeout


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


def _cache_dir() -> str:
    """huggingface_hub.constants' order, read now: HF_HUB_CACHE, HUGGINGFACE_HUB_CACHE, HF_HOME/hub, XDG."""
    env = os.environ
    xdg = env.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    home = env.get("HF_HOME") or os.path.join(xdg, "huggingface")
    cache = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE") or os.path.join(home, "hub")
    return os.path.expandvars(os.path.expanduser(cache))


class HubRepo:
    """One id being resolved: where it is looked for, and the two ways to get it."""

    def __init__(self, label: str, local: str, repo_id: str, revision: str):
        self.label, self.local, self.repo_id, self.revision = label, local, repo_id, revision
        self.cache, self.endpoint = _cache_dir(), (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
        self.offline = any(
            os.environ.get(v, "").upper() in ("1", "ON", "YES", "TRUE")
            for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
        )
        self.storage = os.path.join(self.cache, "models--" + repo_id.replace("/", "--"))

    def fail(self, what: str, fix: str, kind: type[InputError] = InputError) -> InputError:
        mode = "offline (HF_HUB_OFFLINE=1)" if self.offline else "online"
        return kind(
            f"{self.label}: {what}; tried local path {self.local} (not found), cache {self.cache}, "
            f"endpoint {self.endpoint}, {mode}; {fix}"
        )

    def download(self) -> Resolved:
        """Asks the Hub for the revision's commit and file list, then fetches only the needed files."""
        from huggingface_hub import HfApi, hf_hub_download, snapshot_download

        try:
            info = HfApi(endpoint=self.endpoint).model_info(self.repo_id, revision=self.revision, timeout=API_TIMEOUT_S)
        except Exception as exc:
            error = self._map(exc)  # re-raises what it does not know: a bug, not an input problem
            if is_class(exc, "RevisionNotFoundError"):
                raise error from None
            try:  # the Hub is down, unreachable or refuses: a cached copy still serves (as snapshot_download does)
                return self.from_cache()
            except InputError as cached:
                raise (cached if isinstance(cached, IncompleteSnapshot) else error) from None
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
            path = snapshot_download(
                self.repo_id,
                revision=self.revision,
                cache_dir=self.cache,
                local_files_only=True,
                allow_patterns=[CONFIG_NAME],
            )
        except Exception as exc:
            path = getattr(exc, "snapshot_path", None)  # IncompleteSnapshotError (config.json missing): ours says so
            if path is None and is_class(exc, "LocalEntryNotFoundError"):
                raise self.fail(
                    f"revision {self.revision!r} is not in the cache ({self._cached()})",
                    ("unset HF_HUB_OFFLINE to download it, " if self.offline else "")
                    + "check the id and revision, or pass a local directory",
                ) from None
            if path is None:
                raise self._map(exc) from None
        commit, listed = os.path.basename(path), self._cached_listing(os.path.basename(path))
        here = lambda name: _index_shards(os.path.join(path, name)) if os.path.isfile(os.path.join(path, name)) else []  # noqa: E731
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
                    raise self.fail(
                        f"{index} of commit {commit} names shard {absent[0]}, which the repo does not have",
                        "pick another revision, or tell the model's authors",
                    )
                return [*wanted, index, *shards]
        if snapshot is not None:
            raise self._incomplete(snapshot, commit, f"no {SINGLE_NAME}, {INDEX_NAME} or PyTorch weights")
        found = ", ".join(f for f in top if not f.startswith(".")) or "no files"
        raise self.fail(
            f"commit {commit} has no weights in safetensors or PyTorch format (it has: {found})",
            f"pass a model with {SINGLE_NAME} or {INDEX_NAME} and its shards",
        )

    def _check(self, path: str, wanted: list[str], commit: str) -> None:
        missing = [f for f in wanted if f not in OPTIONAL_FILES and not os.path.isfile(os.path.join(path, f))]
        if missing:
            shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
            raise self._incomplete(path, commit, f"{shown} missing")

    def _incomplete(self, path: str, commit: str, what: str) -> InputError:
        return self.fail(
            f"the cached snapshot {path} (commit {commit}) is incomplete: {what} (a download was "
            "interrupted or fetched only some files)",
            "unset HF_HUB_OFFLINE and run again to complete it" if self.offline else "run again to complete it",
            IncompleteSnapshot,
        )

    def _cached_listing(self, commit: str) -> set[str] | None:
        """The commit's full file list, if an earlier snapshot_download cached it (recent huggingface_hub)."""
        try:
            from huggingface_hub import get_cached_repo_tree

            return {f.path for f in get_cached_repo_tree(self.repo_id, revision=commit, cache_dir=self.cache)}
        except Exception:  # older huggingface_hub, or no listing cached: the snapshot's own files must do
            return None

    def _cached(self) -> str:
        """What the cache holds for this repo, for an error message: each cached ref and whether its snapshot is
        there (a ref whose snapshot folder was deleted is named as such, not as a cached revision)."""
        refs = os.path.join(self.storage, "refs")
        names = sorted(os.path.relpath(os.path.join(d, f), refs) for d, _, fs in os.walk(refs) for f in fs)
        found = []
        for name in names:
            try:
                with open(os.path.join(refs, name), encoding="utf-8") as f:
                    commit = f.read(100).strip()
            except (OSError, UnicodeDecodeError):
                commit = ""
            here = bool(commit) and os.path.isdir(os.path.join(self.storage, "snapshots", commit))
            found.append(name if here else f"{name} (its snapshot {commit[:12] or '?'} is missing: deleted?)")
        return f"cached revisions of {self.repo_id}: {', '.join(found) or 'none'}"

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
        return map_error(exc, self)


def _index_shards(index_path: str) -> list[str]:
    """The shard files a weight index names, each a plain file name (as read/checkpoint.py requires)."""
    weight_map = load_json_object(index_path, "weight index").get("weight_map")
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise InputError(f"{index_path}: 'weight_map' must map tensor names to shard file names")
    shards = sorted(set(weight_map.values()))
    bad = [s for s in shards if os.path.basename(s) != s or s in ("", ".", "..")]
    if bad:
        raise InputError(f"{index_path}: names shard {bad[0]!r}; shard names must be plain file names")
    return shards
