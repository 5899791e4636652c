"""Type stub for the compiled module chatvec_fast._C (csrc/bindings.cpp)."""

from collections.abc import Sequence

from typing_extensions import Buffer

F32: int
F16: int
BF16: int

def merge(
    base: Buffer | None,
    base_dtype: int,
    chat: Buffer | None,
    chat_dtype: int,
    cp: Buffer,
    cp_dtype: int,
    n: int,
    alphas: Sequence[float],
    outs: Sequence[Buffer],
    out_dtype: int,
    threads: int = 0,
) -> None: ...
def active_isa() -> str: ...
def supported_isas() -> list[str]: ...
def set_isa(name: str) -> None: ...
def available_cpus() -> int: ...
def start_writeback(fd: int, offset: int, nbytes: int) -> None: ...
def wait_writeback(fd: int, offset: int, nbytes: int) -> None: ...
