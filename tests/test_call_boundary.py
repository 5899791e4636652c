"""The kernel call's boundary: Python's validate() names what is wrong, and _C.run(), reading the same KernelCall
by attribute name, checks every size it will touch (operand buffers, scale buffers from first_element, n, cols and
block sizes; output scales; vectors; alphas), so random calls give a result or a ValueError naming the field,
never a crash (tests/test_reliability.py fuzzes missing operands and dtypes the same way)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import requires_native
from hypothesis import given, seed, settings
from hypothesis import strategies as st

from chatvec_fast import _native
from chatvec_fast.backends.call import KernelCall, Operand, OutScale, Scale, scale_entries, validate


def fp8(n, scale=None):
    return Operand(np.zeros(n, np.uint8), "F8_E4M3", scale)


def test_scale_entries_counts_exactly_what_a_chunk_reads():
    # 10 x 20 tensor, 4 x 8 blocks: 3 block-rows of 3 blocks
    assert scale_entries(Scale("block", None, 20, 0, 4, 8), 200) == 9
    assert scale_entries(Scale("block", None, 20, 0, 4, 8), 1) == 1
    assert scale_entries(Scale("block", None, 20, 0, 4, 8), 17) == 3  # the row reaches its third block
    assert scale_entries(Scale("block", None, 20, 85, 4, 8, first_scale_row=1), 4) == 2  # row 4, cols 5..8
    assert scale_entries(Scale("block", None, 20, 79, 4, 8, first_scale_row=0), 2) == 4  # ends in block-row 1
    assert scale_entries(Scale("row", None, 20, 45, first_scale_row=2), 20) == 2
    assert scale_entries(Scale("tensor", None, 20, 45), 20) == 1
    assert scale_entries(Scale("row", None, 20, 45), 0) == 0
    with pytest.raises(ValueError, match="before first_scale_row"):
        scale_entries(Scale("row", None, 20, 45, first_scale_row=3), 20)


@pytest.mark.parametrize(
    "call,message",
    [
        (KernelCall(4, "mix", [bytearray(8)], "BF16", [[1.0]]), "mode 'mix'"),
        (KernelCall(4, "merge", [bytearray(8)], "BF16", [[1.0]], cp=fp8(4)), "takes base, chat, cp"),
        (KernelCall(4, "apply", [bytearray(8)], "BF16", [[1.0]], cp=fp8(4)), "apply takes 1 to 16"),
        (KernelCall(4, "convert", [bytearray(8)], "F8_E5M2", [[1.0]], cp=fp8(4)), "out_dtype 'F8_E5M2'"),
        (KernelCall(4, "convert", [bytearray(4)], "F8_E4M3", [[1.0]], cp=fp8(4)), "needs an out_scale"),
        (
            KernelCall(
                4,
                "convert",
                [bytearray(8)],
                "BF16",
                [[1.0]],
                cp=Operand(bytearray(8), "BF16", Scale("tensor", np.ones(1, np.float32), 4, 0)),
            ),
            "only FP8",
        ),  # fmt: skip
        (
            KernelCall(
                4, "convert", [bytearray(8)], "BF16", [[1.0]], cp=fp8(4, Scale("row", np.ones(1, np.float32), 2, 0))
            ),
            "reads 2 float32 scales",
        ),  # fmt: skip
        (KernelCall(4, "convert", [bytearray(8)], "BF16", [[1.0]], cp=fp8(3)), "buffer holds 3 bytes"),
        (KernelCall(4, "merge", [bytearray(8)], "BF16", [[1.0, 2.0]], base=fp8(4), chat=fp8(4), cp=fp8(4)), "alphas"),
        (KernelCall(4, "extract", [bytearray(8)] * 2, "BF16", [[1.0]], base=fp8(4), chat=fp8(4)), "one F32/F16/BF16"),
        (
            KernelCall(
                4,
                "convert",
                [bytearray(4)],
                "F8_E4M3",
                [[1.0]],
                cp=fp8(4),
                out_scale=OutScale("row", [bytearray(4)], 3, 0),
            ),
            "inside a row-row",
        ),  # fmt: skip
        (
            KernelCall(
                4,
                "convert",
                [bytearray(4)],
                "F8_E4M3",
                [[1.0]],
                cp=fp8(4),
                out_scale=OutScale("row", [bytearray(4)], 2, 1),
            ),
            "not at the start",
        ),  # fmt: skip
        (
            KernelCall(
                4,
                "convert",
                [bytearray(4)],
                "F8_E4M3",
                [[1.0]],
                cp=fp8(4),
                out_scale=OutScale("row", [bytearray(4)], 2, 0),
            ),
            "need 8",
        ),  # fmt: skip
        (
            KernelCall(
                4,
                "convert",
                [bytearray(4)],
                "F8_E4M3",
                [[1.0]],
                cp=fp8(4),
                out_scale=OutScale("tensor", [bytearray(4)], 2, 0),
            ),
            "'row' or 'block'",
        ),  # fmt: skip
    ],
)
def test_validate_names_the_problem(call, message):
    with pytest.raises(ValueError, match=message):
        validate(call)


def test_a_partial_last_block_row_needs_rows():
    call = KernelCall(6, "convert", [bytearray(6)], "F8_E4M3", [[1.0]], cp=fp8(6),
                      out_scale=OutScale("block", [bytearray(4)], 2, 0, 4, 2))  # fmt: skip
    with pytest.raises(ValueError, match="pass rows="):
        validate(call)
    validate(KernelCall(6, "convert", [bytearray(6)], "F8_E4M3", [[1.0]], cp=fp8(6),
                        out_scale=OutScale("block", [bytearray(4)], 2, 0, 4, 2, rows=3)))  # fmt: skip


def convert(n, op, out_dtype="BF16", outs=None, out_scale=None) -> KernelCall:
    return KernelCall(n, "convert", outs or [np.zeros(16, np.uint8)], out_dtype, [], cp=op, out_scale=out_scale)


@requires_native
def test_native_boundary_checks_sizes():
    """_C.run without validate() in front: each check names the field that is wrong."""
    run = _native.module.run
    s4, codes = np.ones(4, np.float32), np.zeros(8, np.uint8)
    with pytest.raises(ValueError, match=r"call.cp.scale: the chunk starts at row 0, before first_scale_row 1"):
        run(convert(8, fp8(8, Scale("row", s4, 2, 0, first_scale_row=1))))
    with pytest.raises(ValueError, match=r"call.cp.scale.buffer: buffer holds 16 bytes, the kernel needs 32"):
        run(convert(8, fp8(8, Scale("block", s4, 4, 0, 1, 1))))  # 2 rows of 4 one-element blocks
    with pytest.raises(ValueError, match=r"call.cp.buffer: buffer holds 8 bytes, the kernel needs 16"):
        run(convert(8, Operand(codes, "BF16")))
    with pytest.raises(ValueError, match="call.out_dtype: F8_E5M2 is not an output"):
        run(convert(8, fp8(8), "F8_E5M2"))
    with pytest.raises(ValueError, match="call.out_scale: an F8_E4M3 output needs an out_scale"):
        run(convert(8, fp8(8), "F8_E4M3"))
    with pytest.raises(ValueError, match=r"call.out_scale.first_element: 2 must start a row of groups"):
        run(convert(8, fp8(8), "F8_E4M3", out_scale=OutScale("row", [np.zeros(16, np.uint8)], 4, 2)))
    with pytest.raises(ValueError, match=r"call.out_scale.buffers\[0\]: buffer holds 4 bytes, the kernel needs 8"):
        run(convert(8, fp8(8), "F8_E4M3", out_scale=OutScale("row", [np.zeros(4, np.uint8)], 4, 0)))
    with pytest.raises(ValueError, match="call.out_scale.kind: 'tensor', expected 'row' or 'block'"):
        run(convert(8, fp8(8), "F8_E4M3", out_scale=OutScale("tensor", [np.zeros(4, np.uint8)], 4, 0)))
    out = [np.zeros(16, np.uint8)]
    with pytest.raises(ValueError, match="call.vectors: 17 vectors; apply takes 1 to 16"):
        run(KernelCall(8, "apply", out, "BF16", [[1.0] * 17], cp=fp8(8), vectors=(fp8(8),) * 17))
    with pytest.raises(ValueError, match=r"call.alphas\[0\]: 1 alphas; pass 2 \(one per vector\)"):
        run(KernelCall(8, "apply", out, "BF16", [[1.0]], cp=fp8(8), vectors=(fp8(8),) * 2))
    with pytest.raises(ValueError, match="call.alphas: 2 rows for 1 outputs"):
        run(KernelCall(8, "merge", out, "BF16", [[1.0], [2.0]], base=fp8(8), chat=fp8(8), cp=fp8(8)))
    with pytest.raises(ValueError, match="call.cp.scale: sizes overflow"):
        run(convert(8, fp8(8, Scale("block", s4, 1 << 62, 0, 1 << 62, 1))))
    assert run(convert(8, fp8(8, Scale("tensor", s4, 4, 0)))) == 0


@requires_native
def test_native_boundary_reads_the_call_by_name():
    """Names map to codes through the module's tables; a wrong name, type or missing attribute is a ValueError
    naming the field, never a crash or a silent default."""
    from types import SimpleNamespace

    run = _native.module.run
    op = Operand(np.zeros(16, np.uint8), "BF16")
    with pytest.raises(ValueError, match="call.mode: 'mix', expected one of merge, apply, extract, convert"):
        run(KernelCall(8, "mix", [np.zeros(16, np.uint8)], "BF16", []))
    with pytest.raises(ValueError, match=r"call.cp.dtype: 'BF17', expected one of F32, F16, BF16"):
        run(convert(8, Operand(op.buffer, "BF17")))
    with pytest.raises(ValueError, match="call.cp: a tuple has no attribute 'dtype'"):
        run(convert(8, (op.buffer, 2, None)))  # the old positional operand
    with pytest.raises(ValueError, match="call.base must be None in mode 'convert'"):
        run(KernelCall(8, "convert", [np.zeros(16, np.uint8)], "BF16", [], base=op, cp=op))
    with pytest.raises(ValueError, match="call.chat is needed in mode 'merge'"):
        run(KernelCall(8, "merge", [np.zeros(16, np.uint8)], "BF16", [[1.0]], base=op, cp=op))
    with pytest.raises(ValueError, match="call.cp.scale: only FP8 operands take a scale, this one is BF16"):
        run(convert(8, Operand(op.buffer, "BF16", Scale("tensor", np.ones(1, np.float32), 8, 0))))
    with pytest.raises(ValueError, match="call.n: expected an integer >= 0, got -1"):
        run(convert(-1, op))
    with pytest.raises(ValueError, match=r"call.outs\[0\]: a str is not a buffer"):
        run(convert(8, op, outs=["out"]))
    read_only = np.zeros(16, np.uint8)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match=r"call.outs\[0\]: the kernel writes this buffer, but it is read-only"):
        run(convert(8, op, outs=[read_only]))
    with pytest.raises(ValueError, match=r"call.outs\[0\]: buffer is not contiguous"):
        run(convert(8, op, outs=[np.zeros(32, np.uint8)[::2]]))
    fields = {f: getattr(convert(8, op), f) for f in ("mode", "n", "base", "chat", "cp", "vectors", "alphas", "outs")}
    with pytest.raises(ValueError, match="call: a types.SimpleNamespace has no attribute 'out_dtype'"):
        run(SimpleNamespace(**fields))
    # any object with the attribute names will do
    assert run(SimpleNamespace(**fields, out_dtype="BF16", out_scale=None)) == 0


MODES = ["merge", "apply", "extract", "convert", "mix"]
KINDS = [None, "tensor", "row", "block", "diagonal"]
DTYPES = ["F32", "F16", "BF16", "F64", "F8_E4M3", "F8_E5M2", "I8"]


@requires_native
@seed(7)
@settings(max_examples=400, deadline=None, derandomize=True)
@given(
    n=st.integers(0, 300),
    mode=st.sampled_from(MODES),
    kinds=st.lists(st.sampled_from(KINDS), min_size=3, max_size=3),
    geometry=st.lists(st.integers(0, 40), min_size=5, max_size=5),
    sizes=st.lists(st.integers(0, 400), min_size=4, max_size=4),
    dtypes=st.lists(st.sampled_from(DTYPES), min_size=2, max_size=2),
    vectors=st.integers(0, 3),
    fp8_out=st.booleans(),
)
def test_native_call_boundary_never_crashes(n, mode, kinds, geometry, sizes, dtypes, vectors, fp8_out):
    """Random modes, scale geometries and buffer sizes at the C++ boundary (no validate()): a result or a
    ValueError."""
    cols, first, br, bc, fsr = geometry

    def operand(kind):
        scale = None if kind is None else Scale(kind, np.ones(sizes[1] // 4 + 1, np.float32), cols, first, br, bc, fsr)
        return Operand(np.zeros(sizes[0], np.uint8), dtypes[0], scale)

    ops = [operand(k) for k in kinds]
    outs = [np.zeros(sizes[2], np.uint8) for _ in range(2)]
    out_scale = (
        OutScale(kinds[0] or "row", [np.zeros(sizes[3], np.uint8)] * 2, cols, first, br, bc) if fp8_out else None
    )
    call = KernelCall(n, mode, outs, dtypes[1], [[0.5] * max(vectors, 1)] * 2, base=ops[0], chat=ops[1], cp=ops[2],
                      vectors=tuple(ops[:vectors]), out_scale=out_scale)  # fmt: skip
    try:
        _native.module.run(call, 1)
    except ValueError:
        pass
