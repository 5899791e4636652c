"""FP8 inputs with scales and FP8 output with group scales: every backend bit for bit against the reference.

Inputs come from an independent quantizer (tests/fp8_data.py) in the "block" (128 x 128 and 4 x 8), "row"
and "tensor" layouts, on shapes whose rows and columns are not multiples of the block, in chunks that start
mid-tensor; a few codes are NaN, Inf (e5m2) or the largest finite value. The native kernel runs with every
instruction set this CPU has; Triton runs in its interpreter on smaller shapes (~0.2 M elements/s).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from conftest import WITH_TORCH, requires_native, requires_triton
from fp8_data import chunk_operand, dequantize, fp8_table, group_amax, group_ids, nearest_codes, plain_operand, quantize

from chatvec_fast import _native
from chatvec_fast.backends import get_backend
from chatvec_fast.backends.call import KernelCall, Operand, OutScale
from chatvec_fast.backends.reference_call import operand_values, reference_call, reference_results

BIG, SMALL, ROW, TENSOR = ("block", 128, 128), ("block", 4, 8), ("row",), ("tensor",)
WIDTH = {"BF16": 2, "F16": 2, "F32": 4, "F64": 8, "F8_E4M3": 1}


def weights(rows, cols, seed, hostile):
    """base ~ N(0, 0.02), chat and cp = base + N(0, 0.002); hostile adds a few large values."""
    g = np.random.default_rng(seed)
    base = g.standard_normal((rows, cols)) * 0.02
    out = [base, base + g.standard_normal((rows, cols)) * 0.002, base + g.standard_normal((rows, cols)) * 0.002]
    if hostile:
        for w in out:
            w.reshape(-1)[g.integers(0, w.size, max(1, w.size // 500))] = g.choice([3.0, -250.0, 1e-9, 0.0])
    return out


def spoil(codes, dtype, seed):
    """Puts NaN, the largest finite codes (and Inf for e5m2) at a few places."""
    g = np.random.default_rng(seed)
    specials = [0x7F, 0xFF, 0x7E, 0xFE, 0x00, 0x80] + ([0x7C, 0xFC] if dtype == "F8_E5M2" else [])
    flat = codes.reshape(-1)
    flat[g.integers(0, flat.size, max(1, flat.size // 300))] = g.choice(specials)


def make_call(spec, outs_dtype, k, mode, start, stop, out_layout=None, seed=0, hostile=True, own=True):
    """A function returning a fresh KernelCall (new output buffers) for the chunk [start, stop) of a tensor.

    spec: {"rows", "cols", roles: {"base"|"chat"|"cp": (dtype, layout or None[, own scales])}}.
    """
    rows, cols = spec["rows"], spec["cols"]
    ws = dict(zip(("base", "chat", "cp"), weights(rows, cols, seed, hostile)))
    ops = {}
    for role, (dtype, layout, *mine) in spec["roles"].items():
        if layout is None:
            ops[role] = plain_operand(ws[role], dtype, start, stop)
            continue
        codes, scales = quantize(ws[role], dtype, layout)
        if hostile:
            spoil(codes, dtype, seed + len(role))
        ops[role] = chunk_operand(codes, scales, dtype, layout, start, stop, own_scales=mine[0] if mine else own)
    n = stop - start
    alphas = [[0.5], [-1.0], [2.5]][:k]
    if mode == "extract":
        ops.pop("cp", None)
    if mode == "convert":
        ops = {"cp": ops["cp"]}

    def factory():
        outs = [np.full(n * WIDTH[outs_dtype] + 3, 0xAB, np.uint8) for _ in range(k)]
        out_scale = None
        if outs_dtype == "F8_E4M3":
            br, bc = (out_layout[1], out_layout[2]) if out_layout[0] == "block" else (1, 1)
            probe = OutScale(out_layout[0], [], cols, start, br, bc, rows=rows)
            bufs = [np.full(4 * probe.groups(n) + 4, 0xCD, np.uint8) for _ in range(k)]
            out_scale = OutScale(out_layout[0], bufs, cols, start, br, bc, rows=rows)
        return KernelCall(n, mode, outs, outs_dtype, alphas, out_scale=out_scale, **ops)

    return factory


def first_difference(got: np.ndarray, want: np.ndarray) -> str:
    idx = np.nonzero(got != want)[0][:8]
    return f"{int((got != want).sum())} bytes differ; first at {idx.tolist()}: got {got[idx]} want {want[idx]}"


def check(backend, factory, what="", want=None):
    """The backend's outputs, group scales and count equal the oracle's, byte for byte (and nothing is
    written past the chunk). want: reference_call(factory()), when already computed."""
    got_call = factory()
    results, scales, count = want or reference_call(factory())
    got_count = backend.compute(got_call)
    n = got_call.n
    for k, (out, result) in enumerate(zip(got_call.outs, results)):
        want = result.contiguous().view(-1).view(torch.uint8).numpy()
        assert np.array_equal(out[: want.size], want), f"{what} out[{k}]: " + first_difference(out[: want.size], want)
        assert (out[n * WIDTH[got_call.out_dtype] :] == 0xAB).all(), f"{what}: wrote past out[{k}]"
    if scales is not None:
        for k, (buf, s) in enumerate(zip(got_call.out_scale.buffers, scales)):
            want = s.view(torch.uint8).numpy()
            assert np.array_equal(buf[: want.size], want), f"{what} scales[{k}]: " + first_difference(buf, want)
            assert (buf[want.size :] == 0xCD).all(), f"{what}: wrote past out_scale.buffers[{k}]"
    assert got_count == count, f"{what}: count {got_count}, reference {count}"


def check_each_isa(factory, what: str):
    """check() of the native backend with every instruction set, against one oracle result."""
    backend, want = get_backend("native"), reference_call(factory())
    each_isa(lambda isa: check(backend, factory, f"{isa} {what}", want))


def each_isa(fn):
    """Runs fn() with every instruction set of the native kernel."""
    c = _native.module
    isas = c.supported_isas()
    try:
        for isa in isas:
            c.set_isa(isa)
            fn(isa)
    finally:
        c.set_isa(isas[0])


def mixes(dtype, layout):
    other = "F8_E5M2" if dtype == "F8_E4M3" else "F8_E4M3"
    return {
        "fp8-base-chat": {"base": (dtype, layout), "chat": (dtype, layout), "cp": ("BF16", None)},
        "all-fp8-mixed": {"base": (dtype, layout), "chat": (other, ROW), "cp": (dtype, layout)},
        "fp8-cp": {"base": ("F32", None), "chat": ("BF16", None), "cp": (dtype, layout)},
        # one layout for all three (the fused scaled path at K = 1), cp's scales passed whole
        "same-layout": {"base": (dtype, layout), "chat": (dtype, layout), "cp": (dtype, layout, False)},
    }


LAYOUTS = {"block128": (BIG, 300, 200), "block4x8": (SMALL, 37, 45), "row": (ROW, 37, 45), "tensor": (TENSOR, 37, 45)}


@requires_native
@pytest.mark.parametrize("layout_name", LAYOUTS)
@pytest.mark.parametrize("dtype", ["F8_E4M3", "F8_E5M2"])
@pytest.mark.parametrize("mix", ["fp8-base-chat", "all-fp8-mixed", "fp8-cp", "same-layout"])
@pytest.mark.parametrize("out", ["BF16", "F32", "F8_E4M3"])
@pytest.mark.parametrize("k", [1, 3])
def test_native_fp8_grid(layout_name, dtype, mix, out, k):
    layout, rows, cols = LAYOUTS[layout_name]
    spec = {"rows": rows, "cols": cols, "roles": mixes(dtype, layout)[mix]}
    out_layout = layout if layout[0] in ("block", "row") else SMALL
    unit = cols * (out_layout[1] if out_layout[0] == "block" else 1)
    n = rows * cols
    chunks = [(0, n), (unit, n)]  # the whole tensor, and from the second row of groups to the end
    if out != "F8_E4M3":
        chunks.append((cols * 5 + 3, n - 7))  # inputs may start and stop anywhere
    for start, stop in chunks:
        factory = make_call(spec, out, k, "merge", start, stop, out_layout, seed=rows + k, own=start % 2 == 0)
        label = f"{mix} {layout_name} {dtype}->{out} [{start}:{stop}) seed={rows + k}"
        check_each_isa(factory, label)


@requires_native
@pytest.mark.parametrize("mode", ["apply", "convert", "extract"])
@pytest.mark.parametrize("out", ["BF16", "F32", "F64", "F8_E4M3"])
def test_native_fp8_other_modes(mode, out):
    if mode == "extract" and out == "F8_E4M3":
        pytest.skip("extract writes F32/F16/BF16/F64 (validate() refuses FP8)")
    spec = {"rows": 37, "cols": 45, "roles": mixes("F8_E4M3", SMALL)["all-fp8-mixed"]}
    k = 1 if mode == "extract" else 2
    factory = make_call(spec, out, k, mode, 45 * 4, 37 * 45, SMALL, seed=3)
    if mode == "apply":  # chat (e5m2, row scales) as the one vector
        inner = factory

        def factory():
            c = inner()
            return KernelCall(
                c.n, "apply", c.outs, out, [[0.5], [-2.0]], cp=c.cp, vectors=(c.chat,), out_scale=c.out_scale
            )

    check_each_isa(factory, f"{mode}->{out}")


def triton_fp8_cases():
    """(name, layout, rows, cols, out layout, dtype, out) for the interpreter: one 128 x 128 FP8-output case
    (~12 s in the interpreter, so `slow`)."""
    shapes = [("block4x8", SMALL, 9, 20, SMALL), ("block128", BIG, 130, 136, BIG), ("row", ROW, 7, 33, ROW)]
    cases = []
    for (name, *shape), dtype, out in itertools.product(shapes, ["F8_E4M3", "F8_E5M2"], ["BF16", "F8_E4M3"]):
        big_fp8_out = name == "block128" and out == "F8_E4M3"
        if big_fp8_out and dtype == "F8_E5M2":
            continue
        marks = [pytest.mark.slow] if big_fp8_out else []
        cases.append(pytest.param(name, *shape, dtype, out, marks=marks, id=f"{name}-{dtype}-{out}"))
    return cases


@requires_triton
@pytest.mark.parametrize("name,layout,rows,cols,out_layout,dtype,out", triton_fp8_cases())
def test_triton_fp8_matches_reference(name, layout, rows, cols, out_layout, dtype, out):
    backend = get_backend("triton")
    unit = cols * (out_layout[1] if out_layout[0] == "block" else 1)
    n = rows * cols
    for mix in ("fp8-base-chat", "all-fp8-mixed", "same-layout"):
        spec = {"rows": rows, "cols": cols, "roles": mixes(dtype, layout)[mix]}
        for k, (start, stop) in ((1, (0, n)), (3, (unit, n))):
            factory = make_call(spec, out, k, "merge", start, stop, out_layout, seed=k, own=k == 3)
            check(backend, factory, f"triton {mix} {name} {dtype}->{out} [{start}:{stop})")
    if out == "BF16":
        extract = make_call({"rows": rows, "cols": cols, "roles": mixes(dtype, layout)["all-fp8-mixed"]}, "F32", 1,
                            "extract", 5, n - 3)  # fmt: skip
        check(backend, extract, f"triton extract {name} {dtype}")


@pytest.mark.parametrize("layout", [BIG, SMALL, ROW, TENSOR], ids=lambda x: "x".join(map(str, x)))
@pytest.mark.parametrize("dtype", ["F8_E4M3", "F8_E5M2"])
def test_reference_reads_scales_as_the_quantizer_wrote_them(layout, dtype):
    """The reference's operand values equal the independent dequantization, for chunks anywhere."""
    rows, cols = (300, 200) if layout == BIG else (37, 45)
    w = weights(rows, cols, 1, hostile=True)[0]
    codes, scales = quantize(w, dtype, layout)
    spoil(codes, dtype, 2)
    want = dequantize(codes, scales, dtype, layout).reshape(-1)
    for start, stop, own in ((0, rows * cols, False), (cols * 3 + 5, rows * cols - 11, True), (1, 2, True)):
        got = operand_values(chunk_operand(codes, scales, dtype, layout, start, stop, own), stop - start).numpy()
        np.testing.assert_array_equal(got, want[start:stop])
    finite = np.isfinite(want) & (np.abs(w.reshape(-1)) < np.abs(w).max() / 16)
    rel = np.abs(want - w.reshape(-1))[finite] / np.maximum(np.abs(w.reshape(-1))[finite], 1e-30)
    assert np.median(rel) < 0.1  # the quantizer is a quantizer: values land near the weights


@pytest.mark.parametrize("out_layout", [BIG, SMALL, ROW], ids=lambda x: "x".join(map(str, x)))
def test_reference_fp8_output_follows_the_spec(out_layout):
    """Group scales = float32(amax / 448) over finite results (1 for zeros), codes = nearest(x / s)."""
    rows, cols = (300, 200) if out_layout == BIG else (37, 45)
    spec = {"rows": rows, "cols": cols, "roles": mixes("F8_E4M3", out_layout)["all-fp8-mixed"]}
    unit = cols * (out_layout[1] if out_layout[0] == "block" else 1)
    call = make_call(spec, "F8_E4M3", 2, "merge", unit, rows * cols, out_layout, seed=9)()
    x = [r.numpy() for r in reference_results(call)]
    codes, scales, _ = reference_call(call)
    ids = group_ids(rows, cols, out_layout).reshape(-1)[unit:] - group_ids(rows, cols, out_layout).reshape(-1)[unit]
    for k in range(2):
        amax = group_amax(x[k], ids, int(ids.max()) + 1)
        s = (amax / 448.0).astype(np.float32)
        s[(amax == 0) | (s == 0)] = 1.0
        np.testing.assert_array_equal(scales[k].numpy().view(np.uint32), s.view(np.uint32))
        np.testing.assert_array_equal(codes[k].numpy(), nearest_codes(x[k] / s.astype(np.float64)[ids], "F8_E4M3"))
        decoded = fp8_table("F8_E4M3")[codes[k].numpy()] * s.astype(np.float64)[ids]
        ok = np.isfinite(x[k])
        assert (np.abs(decoded[ok] - x[k][ok]) <= np.abs(x[k][ok]) / 16 + s[ids][ok] * 2.0**-9).all()
    assert (codes[0].numpy() == 0x7F).any() and (np.abs(codes[0].numpy().astype(np.int32) & 0x7F) == 0x7E).any()


@pytest.mark.parametrize("backend_name", WITH_TORCH)
def test_zero_groups_get_scale_one(backend_name):
    """A row of zeros gets scale 1 and zero codes; -0.0 stays 0x80."""
    n, cols = 64, 16
    cp = np.zeros(n, np.uint16)
    cp[20] = 0x8000  # -0.0 in a zero row
    bufs, out = [np.zeros(16, np.uint8)], np.full(n, 0xAB, np.uint8)
    call = KernelCall(n, "convert", [out], "F8_E4M3", [[1.0]], cp=Operand(cp.view(np.uint8), "BF16"),
                      out_scale=OutScale("row", bufs, cols, 0))  # fmt: skip
    get_backend(backend_name).compute(call)
    assert (bufs[0].view(np.float32) == 1.0).all()
    assert out[20] == 0x80 and (np.delete(out, 20) == 0).all()
