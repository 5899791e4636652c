"""The general call's boundary: Python's validate() names what is wrong, and _C.run() checks every size it will
touch (scale buffers from first_element, n, cols and block sizes; output scales; vectors; alphas), so random
arguments give a result or a ValueError, never a crash (tests/test_reliability.py does the same for merge())."""

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


@requires_native
def test_native_boundary_checks_sizes():
    c = _native.module
    out, s4 = [np.zeros(16, np.uint8)], np.ones(4, np.float32)
    op = (np.zeros(8, np.uint8), c.F8_E4M3, None)
    with pytest.raises(ValueError, match="before first_scale_row"):
        c.run(3, 8, None, None, (op[0], op[1], (1, s4, 2, 0, 1, 1, 1)), [], [], out, c.BF16)
    with pytest.raises(ValueError, match="buffer holds 16 bytes, the kernel needs 32"):
        c.run(
            3, 8, None, None, (op[0], op[1], (2, s4, 4, 0, 1, 1, 0)), [], [], out, c.BF16
        )  # 2 rows of 4 one-element blocks
    with pytest.raises(ValueError, match="F8_E5M2 is not an output"):
        c.run(3, 8, None, None, op, [], [], out, c.F8_E5M2)
    with pytest.raises(ValueError, match="needs an out_scale"):
        c.run(3, 8, None, None, op, [], [], out, c.F8_E4M3)
    with pytest.raises(ValueError, match="must start a row of groups"):
        c.run(3, 8, None, None, op, [], [], out, c.F8_E4M3, (1, [np.zeros(16, np.uint8)], 4, 2, 1, 1))
    with pytest.raises(ValueError, match="out_scale buffer 0: buffer holds 4 bytes, the kernel needs 8"):
        c.run(3, 8, None, None, op, [], [], out, c.F8_E4M3, (1, [np.zeros(4, np.uint8)], 4, 0, 1, 1))
    with pytest.raises(ValueError, match="apply takes 1 to 16"):
        c.run(1, 8, None, None, op, [op] * 17, [[1.0] * 17], out, c.BF16)
    with pytest.raises(ValueError, match="pass 2"):
        c.run(1, 8, None, None, op, [op] * 2, [[1.0]], out, c.BF16)
    with pytest.raises(ValueError, match="sizes overflow"):
        c.run(3, 8, None, None, (op[0], op[1], (2, s4, 1 << 62, 0, 1 << 62, 1, 0)), [], [], out, c.BF16)
    assert c.run(3, 8, None, None, (op[0], op[1], (0, s4, 4, 0, 1, 1, 0)), [], [], out, c.BF16) == 0


@requires_native
@seed(7)
@settings(max_examples=400, deadline=None, derandomize=True)
@given(
    n=st.integers(0, 300),
    mode=st.integers(-1, 4),
    kinds=st.lists(st.integers(-1, 3), min_size=3, max_size=3),
    geometry=st.lists(st.integers(0, 40), min_size=5, max_size=5),
    sizes=st.lists(st.integers(0, 400), min_size=4, max_size=4),
    codes=st.lists(st.integers(-1, 6), min_size=2, max_size=2),
    vectors=st.integers(0, 3),
    fp8_out=st.booleans(),
)
def test_native_call_boundary_never_crashes(n, mode, kinds, geometry, sizes, codes, vectors, fp8_out):
    """Random modes, scale geometries and buffer sizes at the C++ boundary: a result or a ValueError."""
    c = _native.module
    cols, first, br, bc, fsr = geometry

    def operand(kind):
        scale = None if kind < 0 else (kind, np.ones(sizes[1] // 4 + 1, np.float32), cols, first, br, bc, fsr)
        return (np.zeros(sizes[0], np.uint8), codes[0], scale)

    ops = [operand(k) for k in kinds]
    outs = [np.zeros(sizes[2], np.uint8) for _ in range(2)]
    out_scale = (kinds[0], [np.zeros(sizes[3], np.uint8)] * 2, cols, first, br, bc) if fp8_out else None
    try:
        c.run(mode, n, ops[0], ops[1], ops[2], ops[:vectors], [[0.5] * max(vectors, 1)] * 2, outs, codes[1],
              out_scale, 1)  # fmt: skip
    except ValueError:
        pass
