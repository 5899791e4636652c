"""A mergekit config file read as untrusted input: bounded in size and in the values its YAML aliases expand to,
its messages bounded too (a value the file controls is never shown whole)."""

from __future__ import annotations

import reprlib

from ..errors import ChatvecError
from ..regular_files import open_regular


class ConfigError(ChatvecError):
    """A mergekit config chatvec cannot run as mergekit means it; the message names the file and the key."""


MAX_CONFIG_BYTES = 1 << 20  # mergekit configs are a few hundred bytes
# Values of the config with every YAML alias expanded: a real config has tens; an "alias bomb" (each anchor
# listing the previous one ten times) has 10^9 in a few hundred bytes, which any walk or repr would pay for.
MAX_VALUES = 10_000
_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 60
_repr.maxlist = _repr.maxdict = 6
short = _repr.repr  # a bounded repr for messages: never the whole of a value the file controls


def _check_size(path: str, doc):
    """Counts the values of doc as a walk would meet them (aliases expanded), stopping at MAX_VALUES."""
    count, todo = 0, [doc]
    while todo:
        value = todo.pop()
        count += 1
        if count > MAX_VALUES:
            raise ConfigError(f"{path}: expands to more than {MAX_VALUES} values (YAML anchors and aliases that "
                              "repeat each other?); a mergekit config has tens. Write it out plainly")  # fmt: skip
        if isinstance(value, dict):
            todo.extend(value.keys())
            todo.extend(value.values())
        elif isinstance(value, list):
            todo.extend(value)


def load_documents(path: str) -> list:
    """The YAML documents of the file at path (empty ones left out), each checked by _check_size."""
    import yaml  # PyYAML: only --mergekit-config needs it

    try:
        with open_regular(path, "mergekit config") as fh:  # a named pipe would block the read forever
            raw = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the mergekit config: {exc.strerror or exc}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes; a mergekit config is a few hundred")
    try:
        docs = [d for d in yaml.safe_load_all(raw.decode("utf-8")) if d is not None]
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except (yaml.YAMLError, RecursionError) as exc:  # its message says where: 'in "<file>", line 3, column 7'
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())[:300]}") from None
    for doc in docs:
        _check_size(path, doc)
    return docs
