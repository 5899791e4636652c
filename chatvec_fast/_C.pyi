"""Type stub for the compiled module chatvec_fast._C (csrc/bindings.cpp). tests/test_layout.py checks it
against the module's own signatures."""

import sys
from collections.abc import Sequence
from typing import Any

if sys.version_info >= (3, 12):
    from collections.abc import Buffer
else:
    Buffer = Any  # collections.abc.Buffer (PEP 688) is new in 3.12

F32: int
F16: int
BF16: int
F64: int

def merge(
    base: Buffer | None,
    base_dtype: int,
    chat: Buffer | None,
    chat_dtype: int,
    cp: Buffer | None,
    cp_dtype: int,
    n: int,
    alphas: Sequence[float],
    outs: Sequence[Buffer],
    out_dtype: int,
    threads: int = 0,
) -> int: ...
def active_isa() -> str: ...
def supported_isas() -> list[str]: ...
def set_isa(name: str) -> None: ...
def available_cpus() -> int: ...
def start_writeback(fd: int, offset: int, nbytes: int) -> None: ...
def wait_writeback(fd: int, offset: int, nbytes: int) -> None: ...
