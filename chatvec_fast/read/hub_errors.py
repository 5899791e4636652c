"""Hugging Face Hub failures as one-line InputErrors: what went wrong, where it looked, what to do.

Exceptions are recognised by class name: no import of huggingface_hub or of an HTTP client is needed, and
the names are the same across their versions.
"""

from __future__ import annotations

from ..errors import InputError

_LOGIN = "for a gated or private model, log in (`hf auth login`, formerly `huggingface-cli login`) or set HF_TOKEN"


class IncompleteSnapshot(InputError):
    """A cached snapshot that lacks needed files: reported even when the Hub was asked and could not answer."""


def map_error(exc: Exception, hub) -> InputError:
    """huggingface_hub's and the network's exceptions as one-line InputErrors naming what to do (hub: the
    HubRepo being resolved); anything else is re-raised: a bug, not an input problem."""
    if isinstance(exc, InputError):
        return exc
    status, page = getattr(getattr(exc, "response", None), "status_code", None), f"{hub.endpoint}/{hub.repo_id}"
    if is_class(exc, "GatedRepoError"):
        return hub.fail("the model is gated", f"accept its conditions at {page}, then {_LOGIN}")
    if is_class(exc, "RepositoryNotFoundError") or status == 401:
        return hub.fail(
            "no such model on the Hub (or it is private)", f"check the id or pass a local directory; {_LOGIN}"
        )
    if is_class(exc, "RevisionNotFoundError"):
        return hub.fail(
            f"no revision {hub.revision!r} of {hub.repo_id} on the Hub", f"check the branch, tag or commit at {page}"
        )
    if status is not None:
        return hub.fail(
            f"the Hub answered HTTP {status} ({_first_line(exc)})",
            "try again later, check HF_ENDPOINT, or pass a local directory",
        )
    if isinstance(exc, OSError) or is_class(exc, "TransportError", "RequestException"):
        return hub.fail(
            f"could not reach the Hub ({type(exc).__name__}: {_first_line(exc)}) and the model is not cached",
            "check the network and HF_ENDPOINT, or pass a local directory",
        )
    raise exc


def is_class(exc: BaseException, *names: str) -> bool:
    """By class name: no import needed, and the same across huggingface_hub's and HTTP clients' versions."""
    return any(c.__name__ in names for c in type(exc).__mro__)


def _first_line(exc: BaseException) -> str:
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
