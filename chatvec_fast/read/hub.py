"""Hugging Face Hub model ids as local directories: the cache first, then a download of only what a merge reads.

    >>> resolve("Qwen/Qwen2-0.5B-Instruct@main", role="chat")  # path: ~/.cache/huggingface/hub/models--Qwen--...
    Resolved(path='.../snapshots/<sha>', repo_id='Qwen/Qwen2-0.5B-Instruct', revision='main', commit='<sha>')

huggingface_hub is optional: imported only to resolve an id; when missing, an InputError says how to install it.
HF_ENDPOINT, HF_HUB_CACHE (or HF_HOME) and HF_HUB_OFFLINE are read at each call, not once at its import.
"""

from __future__ import annotations

import os
import re

from ..errors import InputError
from .hub_snapshot import HubRepo, Resolved

DEFAULT_REVISION = "main"
_SHA = re.compile(r"[0-9a-f]{40}")
# huggingface_hub.utils.validate_repo_id's rules for each part (ASCII letters, digits, '_', '-', '.'; starts and
# ends with a letter, digit or '_'; at most 96), namespace required: a bare word is far more often a mistyped
# local directory than one of the few legacy un-namespaced models (which redirect to namespaced ids anyway).
_PART = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?"
_HUB_ID = re.compile(rf"{_PART}/{_PART}")


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
            raise InputError(
                f"{label}: is a local path, so revision {revision!r} cannot apply; pass the Hub id "
                "instead, or leave the revision out"
            )
        return Resolved(ref)
    repo_id, at, ref_revision = ref.partition("@")
    if at and revision and ref_revision and revision != ref_revision:
        raise InputError(f"{label}: names revision {ref_revision!r} but revision {revision!r} was also given; give one")
    if not looks_like_hub_id(ref):
        raise InputError(
            f"{label}: no such file or directory, and not a Hugging Face model id (looked for "
            f"{os.path.abspath(ref)}; an id is 'org/name' or 'org/name@revision')"
        )
    try:
        import huggingface_hub  # noqa: F401
    except ImportError:
        raise InputError(
            f"{label}: looks like a Hugging Face model id, but huggingface_hub is not installed; "
            "pip install 'huggingface_hub>=0.23', or pass a local directory"
        ) from None
    hub = HubRepo(label, os.path.abspath(ref), repo_id, ref_revision or revision or DEFAULT_REVISION)
    if hub.offline or _SHA.fullmatch(hub.revision):  # a cached commit never changes: no need to ask the Hub
        try:
            return hub.from_cache()
        except InputError:
            if hub.offline:
                raise
    return hub.download()
