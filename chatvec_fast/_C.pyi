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
F8_E4M3: int
F8_E5M2: int
MAX_VECTORS: int
# name -> code tables of the C++ enums (chatvec_fast/kernel_codes.py holds the same; a test compares them)
DTYPE_CODES: dict[str, int]
MODE_CODES: dict[str, int]
SCALE_KIND_CODES: dict[str, int]
NO_SCALE: int

# run()'s operands (chatvec_fast/backends/native.py builds them from backends/call.py's dataclasses):
# a scale is (kind: 0 tensor, 1 row, 2 block, float32 buffer, cols, first_element, block_rows, block_cols,
# first_scale_row); an operand is (buffer, dtype code, scale or None); an FP8 output's scale is (kind: 1 row
# or 2 block, one float32 buffer per output, cols, first_element, block_rows, block_cols).
ScaleSpec = tuple[int, Buffer, int, int, int, int, int]
OperandSpec = tuple[Buffer, int, ScaleSpec | None]
OutScaleSpec = tuple[int, Sequence[Buffer], int, int, int, int]

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
def run(
    mode: int,
    n: int,
    base: OperandSpec | None,
    chat: OperandSpec | None,
    cp: OperandSpec | None,
    vectors: Sequence[OperandSpec],
    alphas: Sequence[Sequence[float]],
    outs: Sequence[Buffer],
    out_dtype: int,
    out_scale: OutScaleSpec | None = None,
    threads: int = 0,
) -> int: ...
def active_isa() -> str: ...
def supported_isas() -> list[str]: ...
def set_isa(name: str) -> None: ...
def available_cpus() -> int: ...
def start_writeback(fd: int, offset: int, nbytes: int) -> None: ...
def wait_writeback(fd: int, offset: int, nbytes: int) -> None: ...
