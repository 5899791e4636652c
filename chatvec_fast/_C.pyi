"""Type stub for the compiled module chatvec_fast._C (csrc/bindings.cpp). tests/test_layout.py checks it
against the module's own signatures."""

from chatvec_fast.backends.call import KernelCall

# name -> code tables of the C++ enums (chatvec_fast/kernel_codes.py holds the same; a test compares them)
DTYPE_CODES: dict[str, int]
MODE_CODES: dict[str, int]
SCALE_KIND_CODES: dict[str, int]
NO_SCALE: int
MAX_VECTORS: int

# run() reads its call by attribute name: a KernelCall, or any object with the same attributes
# (mode, n, base, chat, cp, vectors, alphas, outs, out_dtype, out_scale; Operand, Scale, OutScale alike).
def run(call: KernelCall, threads: int = 0) -> int: ...
def active_isa() -> str: ...
def supported_isas() -> list[str]: ...
def set_isa(name: str) -> None: ...
def available_cpus() -> int: ...
def start_writeback(fd: int, offset: int, nbytes: int) -> None: ...
def wait_writeback(fd: int, offset: int, nbytes: int) -> None: ...

# chatvec inspect's sums (csrc/block_sums.h) of n elements in blocks, into out: ceil(n / block) rows of 4 sums
# (2 with cp=None); dtypes "F32", "F16", "BF16" (uint16 bit patterns) or "F64"
def block_sums(
    n: int,
    block: int,
    base: object,
    base_dtype: str,
    chat: object,
    chat_dtype: str,
    cp: object | None,
    cp_dtype: str | None,
    out: object,
) -> None: ...
