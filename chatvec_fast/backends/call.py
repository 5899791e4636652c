"""The kernel call, described without torch: the one call every backend takes, for every chunk.

Every backend (native, torch, triton) runs it with the same bits:

    count = backend.compute(call)      # extract's count of elements the output dtype rounded, else 0

    call = KernelCall(n, mode, outs, out_dtype, alphas, base=None, chat=None, cp=None, vectors=(), out_scale=None)
    mode "merge":   base, chat, cp       d = chat - base; out_k = cp + alphas[k][0] * d
    mode "apply":   cp, vectors v_0..    acc = cp; acc = acc + alphas[k][m] * v_m for m = 0..M-1; out_k = acc
    mode "extract": base, chat           out = chat - base (one output; counts the elements it rounded)
    mode "convert": cp                   out_k = cp

    Operand(buffer, dtype, scale=None)   dtype "F32", "F16", "BF16", "F64", "F8_E4M3", "F8_E5M2"
    Scale(kind, buffer, cols, first_element, block_rows=1, block_cols=1, first_scale_row=0)
    OutScale(kind, buffers, cols, first_element, block_rows=1, block_cols=1, rows=None)

Buffers are host buffers (numpy arrays, bytearrays) holding the chunk's n elements; scale buffers hold
float32. All arithmetic is float64 in this order, products and sums each rounded, never fused:

1. An operand element is decode(code) * float64(scale), exactly. F8_E4M3 is e4m3fn (bias 7, subnormals,
   no Inf, S.1111.111 is NaN, max 448); F8_E5M2 is the top byte of an f16 (Inf and NaN).
2. Outputs F32/F16/BF16/F64 are rounded once, to nearest-even; NaN becomes the format's positive quiet NaN.
3. An F8_E4M3 output (merge, apply, convert) is re-quantized per group, a row or a block_rows x block_cols
   block clipped to the tensor: amax = max |x| over the group's finite results; s = float32(amax / 448.0)
   (one rounding of the float64 quotient); s = 1.0 when amax == 0 or s underflows to 0 (a block of zeros
   gets scale 1); s goes to the group's slot of out_scale.buffers[k]; code = e4m3(x / float64(s)), one
   rounding to nearest-even that saturates to +-448 for larger magnitudes and +-Inf; NaN -> 0x7F,
   -0.0 -> 0x80. Beyond float32's range (amax > 448 * FLT_MAX, possible only from F64 inputs) s is +Inf
   and IEEE division gives the codes.

Limits: apply takes 1 to 16 vectors natively (MAX_VECTORS) and 1 to 4 on triton (MAX_TRITON_VECTORS).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..dtypes import FP8, KERNEL_CODES, KERNEL_OUTPUTS, itemsize
from ..kernel_codes import MAX_VECTORS, MODE_CODES, SCALE_KIND_CODES

MODES = MODE_CODES  # the codes, one source for csrc/ and kernels/ (kernel_codes.py)
SCALE_KINDS = SCALE_KIND_CODES
FP8_MAX = 448.0  # largest finite e4m3fn value


@dataclass(frozen=True)
class Scale:
    """How an FP8 operand's codes become values: value = decode(code) * scale[group] (exact in float64).

    kind "tensor": buffer[0] for every element; "row": buffer[row - first_scale_row]; "block":
    buffer[(row // block_rows - first_scale_row) * ceil(cols / block_cols) + col // block_cols], where the
    chunk's element i is element e = first_element + i of the tensor, row = e // cols, col = e % cols.

    For example, a chunk starting at block-row 1 of a 7168-column weight, with the scales from block-row 1 on:
    Scale("block", scales, cols=7168, first_element=128 * 7168, block_rows=128, block_cols=128, first_scale_row=1)
    """

    kind: str
    buffer: object  # float32 values, row-major, starting at scale row `first_scale_row`
    cols: int  # elements per row of the tensor (a 1-D tensor is one row)
    first_element: int  # the chunk's element 0 is this element of the tensor
    block_rows: int = 1
    block_cols: int = 1
    first_scale_row: int = 0  # "row": the row buffer[0] holds; "block": the block-row buffer[0] holds


@dataclass(frozen=True)
class Operand:
    buffer: object  # the chunk's n elements
    dtype: str
    scale: Scale | None = None  # FP8 only; None means scale 1


@dataclass(frozen=True)
class OutScale:
    """An F8_E4M3 output's group scales; a chunk holds whole groups (whole rows, or whole block-rows).

    buffers[k] receives output k's group scales (float32) in the layout of Scale.buffer with
    first_scale_row = first_element // cols (row) or first_element // (block_rows * cols) (block).
    rows: the tensor's row count, needed only when the chunk ends the tensor with a partial block-row.
    """

    kind: str  # "row" or "block"
    buffers: list
    cols: int
    first_element: int  # a multiple of cols ("row") or of block_rows * cols ("block")
    block_rows: int = 1
    block_cols: int = 1
    rows: int | None = None

    def unit(self) -> int:
        """Elements per row of groups."""
        return self.cols * (self.block_rows if self.kind == "block" else 1)

    def groups(self, n: int) -> int:
        """Group scales a chunk of n elements writes per output."""
        per_row = -(-self.cols // self.block_cols) if self.kind == "block" else 1
        return -(-n // self.unit()) * per_row


@dataclass(frozen=True)
class KernelCall:
    n: int
    mode: str
    outs: list  # K buffers of n elements of out_dtype
    out_dtype: str
    alphas: list  # K rows: merge one alpha each, apply one per vector; extract/convert: ignored
    base: Operand | None = None
    chat: Operand | None = None
    cp: Operand | None = None
    vectors: tuple = field(default=())
    out_scale: OutScale | None = None


def scale_entries(scale: Scale, n: int) -> int:
    """Scale values a chunk of n elements reads: one past the largest index (csrc/bindings_run.cpp agrees)."""
    if n == 0:
        return 0
    if scale.kind == "tensor":
        return 1
    last = scale.first_element + n - 1
    first_row, last_row = scale.first_element // scale.cols, last // scale.cols
    if scale.kind == "row":
        if first_row < scale.first_scale_row:
            _fail(
                f"the chunk starts at row {first_row}, before first_scale_row "
                f"{scale.first_scale_row}; pass the scales from the chunk's first row on"
            )
        return last_row - scale.first_scale_row + 1
    per_row = -(-scale.cols // scale.block_cols)
    first_block_row, last_block_row = first_row // scale.block_rows, last_row // scale.block_rows
    if first_block_row < scale.first_scale_row:
        _fail(
            f"the chunk starts in block-row {first_block_row}, before "
            f"first_scale_row {scale.first_scale_row}; pass the scales from the chunk's first block-row on"
        )
    start = max(scale.first_element, last_block_row * scale.block_rows * scale.cols)
    top = per_row - 1 if start // scale.cols != last_row else (last % scale.cols) // scale.block_cols
    return (last_block_row - scale.first_scale_row) * per_row + top + 1


def operands(call: KernelCall) -> list[tuple[str, Operand]]:
    """(name, operand) of every operand the call reads, in the order the formula reads them."""
    named = [("base", call.base), ("chat", call.chat), ("cp", call.cp)]
    named += [(f"vectors[{m}]", v) for m, v in enumerate(call.vectors)]
    return [(name, op) for name, op in named if op is not None]


# Which of (base, chat, cp) each mode reads.
_WANTS = {"merge": (True, True, True), "apply": (False, False, True), "extract": (True, True, False),
          "convert": (False, False, True)}  # fmt: skip


def validate(call: KernelCall, max_vectors: int = MAX_VECTORS, backend: str = "native"):
    """Raises ValueError, naming the field and the fix, for anything the kernels do not define.

    Runs on every chunk: each message is built only when its check fails (formatting them all up front
    cost 10 us a call, a quarter of a 64K-element native kernel call).
    """
    if call.mode not in MODES:
        _fail(f"mode {call.mode!r}: expected one of {', '.join(MODES)}")
    given = (call.base is not None, call.chat is not None, call.cp is not None)
    if given != _WANTS[call.mode]:
        want, got = ([n for n, g in zip(("base", "chat", "cp"), flags) if g] for flags in (_WANTS[call.mode], given))
        _fail(f"mode {call.mode!r} takes {', '.join(want)}; got {', '.join(got) or 'none'}")
    apply = call.mode == "apply"
    if not (1 <= len(call.vectors) <= max_vectors if apply else not call.vectors):
        _fail(
            f"{len(call.vectors)} vectors: apply takes 1 to {max_vectors} on the {backend} backend (native takes "
            f"{MAX_VECTORS}), the other modes none"
        )
    if call.n < 0 or not call.outs:
        _fail(f"n = {call.n}, {len(call.outs)} outputs: need n >= 0, one output")
    if call.out_dtype not in KERNEL_OUTPUTS:
        _fail(f"out_dtype {call.out_dtype!r}: expected one of {', '.join(sorted(KERNEL_OUTPUTS))}")
    if call.mode == "extract" and (len(call.outs) != 1 or call.out_dtype == "F8_E4M3"):
        _fail("extract writes one F32/F16/BF16/F64 output")
    if call.mode in ("merge", "apply"):
        per = len(call.vectors) if apply else 1
        if len(call.alphas) != len(call.outs) or any([len(row) != per for row in call.alphas]):
            _fail(
                f"alphas: need {len(call.outs)} rows (one per output) of {per} "
                f"{'(one per vector)' if apply else 'alpha'}; got {[len(r) for r in call.alphas]}"
            )
    for name, op in operands(call):
        if op.dtype not in KERNEL_CODES:
            _fail(f"{name}: dtype {op.dtype!r} is not one the kernels read ({', '.join(KERNEL_CODES)})")
        need = call.n * itemsize(op.dtype)
        if _nbytes(op.buffer) < need:
            _fail(f"{name}: buffer holds {_nbytes(op.buffer)} bytes, {call.n} {op.dtype} elements need {need}")
        if op.scale is not None:
            if op.dtype not in FP8:
                _fail(f"{name}: only FP8 operands take a scale, this one is {op.dtype}")
            _validate_scale(f"{name}.scale", op.scale, call.n)
    _validate_out(call)


def _validate_scale(what: str, s: Scale, n: int):
    if s.kind not in SCALE_KINDS:
        _fail(f"{what}: kind {s.kind!r}, expected one of {', '.join(SCALE_KINDS)}")
    if min(s.cols, s.block_rows, s.block_cols) < 1 or min(s.first_element, s.first_scale_row) < 0:
        _fail(f"{what}: cols, block_rows and block_cols must be >= 1, first_element and first_scale_row >= 0")
    try:
        need = scale_entries(s, n)
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None
    if _nbytes(s.buffer) < 4 * need:
        _fail(
            f"{what}: buffer holds {_nbytes(s.buffer)} bytes, the chunk reads {need} float32 scales ({4 * need} bytes)"
        )


def _validate_out(call: KernelCall):
    need = call.n * itemsize(call.out_dtype)
    for k, out in enumerate(call.outs):
        if _nbytes(out) < need:
            _fail(f"outs[{k}]: buffer holds {_nbytes(out)} bytes, {call.n} {call.out_dtype} elements need {need}")
    o = call.out_scale
    if (o is None) != (call.out_dtype != "F8_E4M3"):
        _fail("an F8_E4M3 output needs an out_scale, and only it takes one")
    if o is None:
        return
    if o.kind not in ("row", "block"):
        _fail(f"out_scale: kind {o.kind!r}, expected 'row' or 'block'")
    if min(o.cols, o.block_rows, o.block_cols) < 1 or o.first_element < 0:
        _fail("out_scale: cols, block_rows and block_cols must be >= 1, first_element >= 0")
    unit, end = o.unit(), o.first_element + call.n
    if o.first_element % unit:
        _fail(
            f"out_scale: first_element {o.first_element} is not at the start of a "
            f"{o.kind}-row of groups (a multiple of {unit}); cut chunks at group rows"
        )
    ends_tensor = o.rows is not None and end == o.rows * o.cols and end % o.cols == 0
    if end % unit and not ends_tensor:
        _fail(
            f"out_scale: the chunk ends at element {end}, inside a {o.kind}-row of "
            f"groups ({unit} elements); chunks hold whole groups (pass rows= for a tensor's last partial block-row)"
        )
    if len(o.buffers) != len(call.outs):
        _fail(f"out_scale: {len(o.buffers)} scale buffers for {len(call.outs)} outputs")
    need = 4 * o.groups(call.n)
    for k, buf in enumerate(o.buffers):
        if _nbytes(buf) < need:
            _fail(
                f"out_scale.buffers[{k}]: holds {_nbytes(buf)} bytes, the chunk's "
                f"{o.groups(call.n)} group scales need {need}"
            )


def _nbytes(buf) -> int:
    try:
        return buf.nbytes  # a numpy array's (the pipeline's buffers): 0.04 us, a memoryview 0.16 us
    except AttributeError:
        return memoryview(buf).nbytes


def _fail(message: str):
    raise ValueError(message)
