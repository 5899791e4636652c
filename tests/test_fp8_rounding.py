"""FP8 conversions against oracles built differently: the 256 codes' values, their midpoints, ties to even.

- Decoding: every code of e4m3fn and e5m2, in the reference, the native kernel and Triton, against a table
  built from the formats' fields (tests/fp8_data.py), and torch's own float8 types.
- Rounding to e4m3: the reference exhaustively over every code value, every midpoint and its neighbours,
  every binade and the specials; the kernels through an FP8 output whose group scale is exactly 1.
- torch's float8_e4m3fn casts, recorded: from float32 nearest-even and saturating (NaN keeps its sign);
  from float64 through float32, so twice rounded.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import WITH_TORCH
from fp8_data import fp8_table, nearest_codes

from chatvec_fast.backends import get_backend
from chatvec_fast.backends.call import KernelCall, Operand, OutScale, Scale
from chatvec_fast.backends.reference_call import FP8_VALUES, round_e4m3

TORCH_FP8 = {"F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2}


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal as float64 values, NaN equal to NaN."""
    return bool(((a == b) | (np.isnan(a) & np.isnan(b))).all())


def interesting(seed=0, n=200_000) -> np.ndarray:
    """Every finite e4m3 value, every midpoint and its float64 neighbours, random doubles over every binade
    from below the smallest subnormal to past 448, and the specials; both signs."""
    g = np.random.default_rng(seed)
    table = fp8_table("F8_E4M3")
    values = np.sort(table[:0x7F])
    mids = (values[:-1] + values[1:]) / 2
    above = [448.0, 464.0, 480.0, 1e6, np.inf, np.nan, 2.0**-10, 2.0**-11, 1e-300, 5e-324]
    parts = [values, mids, np.nextafter(mids, np.inf), np.nextafter(mids, -np.inf), np.array(above)]
    parts.append(np.ldexp(g.random(n) + 1, g.integers(-14, 11, n)))
    parts.append(g.standard_normal(n) * 100)
    x = np.concatenate(parts)
    return np.concatenate([x, -x])


@pytest.mark.parametrize("dtype", ["F8_E4M3", "F8_E5M2"])
def test_decode_tables_agree(dtype):
    """The reference's table, the independent one and torch's float8 types give every code the same value."""
    want = fp8_table(dtype)
    assert same(FP8_VALUES[dtype].numpy(), want)
    assert same(torch.arange(256, dtype=torch.uint8).view(TORCH_FP8[dtype]).double().numpy(), want)
    assert want[0x7E if dtype == "F8_E4M3" else 0x7B] == (448.0 if dtype == "F8_E4M3" else 57344.0)


@pytest.mark.parametrize("backend_name", WITH_TORCH)
@pytest.mark.parametrize("dtype", ["F8_E4M3", "F8_E5M2"])
def test_every_code_decodes_exactly(backend_name, dtype):
    """convert from FP8 (scale 1, and a row scale) to F64: all 256 codes."""
    codes = np.arange(256, dtype=np.uint8)
    for scale in (None, np.array([0.375, 3.0e-5], np.float32)):
        s = None if scale is None else Scale("row", scale, cols=128, first_element=0)
        out = np.zeros(256 * 8, np.uint8)
        call = KernelCall(256, "convert", [out], "F64", [[1.0]], cp=Operand(codes, dtype, s))
        get_backend(backend_name).compute(call)
        want = fp8_table(dtype) * (1.0 if scale is None else np.repeat(scale.astype(np.float64), 128))
        got = out.view(np.float64)
        assert same(got, want), np.nonzero(~((got == want) | np.isnan(want)))[0][:8]
        assert (out.view(np.uint64)[np.isnan(want)] == 0x7FF8000000000000).all()  # canonical NaN


def test_reference_rounding_matches_the_oracle():
    x = interesting()
    got = round_e4m3(torch.from_numpy(x)).numpy()
    want = nearest_codes(x, "F8_E4M3")
    bad = np.nonzero(got != want)[0]
    assert bad.size == 0, f"{bad.size} differ, first {x[bad[:5]]}: got {got[bad[:5]]} want {want[bad[:5]]}"
    # the rules, spelled out
    rules = [(448.0, 0x7E), (464.0, 0x7E), (1e6, 0x7E), (np.inf, 0x7E), (-np.inf, 0xFE), (np.nan, 0x7F)]
    rules += [(-0.0, 0x80), (0.0, 0x00), (2.0**-10, 0x00), (3 * 2.0**-10, 0x02), (2.0**-9, 0x01), (1.0625, 0x38)]
    rules += [(1.1875, 0x3A), (-1e-30, 0x80)]  # ties to even; a negative value that rounds to zero keeps its sign
    for value, code in rules:
        assert round_e4m3(torch.tensor([value], dtype=torch.float64)).item() == code, value


@pytest.mark.parametrize("backend_name", WITH_TORCH)
def test_kernels_round_to_e4m3_like_the_oracle(backend_name):
    """An FP8 output whose rows each hold 448 (so every group scale is exactly 1) rounds every value as the
    oracle does; Inf saturates, NaN gives 0x7F."""
    x = interesting(seed=1, n=5_000 if backend_name == "triton" else 200_000)
    x = x[np.isnan(x) | (np.abs(x) <= 448)]
    x = np.concatenate([x, [np.inf, -np.inf, np.nan]])
    cols = 256
    rows = -(-x.size // (cols - 1))
    body = np.zeros(rows * (cols - 1))
    body[: x.size] = x
    grid = np.concatenate([np.full((rows, 1), 448.0), body.reshape(rows, cols - 1)], axis=1)
    n = grid.size
    out, scales = np.zeros(n, np.uint8), np.zeros(4 * rows, np.uint8)
    call = KernelCall(n, "convert", [out], "F8_E4M3", [[1.0]], cp=Operand(grid.reshape(-1).view(np.uint8), "F64"),
                      out_scale=OutScale("row", [scales], cols, 0))  # fmt: skip
    get_backend(backend_name).compute(call)
    assert (scales.view(np.float32) == 1.0).all()
    want = nearest_codes(grid.reshape(-1), "F8_E4M3")
    bad = np.nonzero(out != want)[0]
    assert bad.size == 0, f"{bad.size} differ: x {grid.reshape(-1)[bad[:5]]} got {out[bad[:5]]} want {want[bad[:5]]}"
    assert out[np.nonzero(grid.reshape(-1) == np.inf)[0][0]] == 0x7E


def test_torch_float8_e4m3fn_cast_rounds_to_nearest_even_and_saturates():
    """What torch 2.x does for float32 -> float8_e4m3fn (recorded, not used: the kernels round from float64):
    nearest-even like the oracle on every float32 we try, finite overflow and +-Inf saturate to +-448,
    NaN -> 0x7F."""
    x32 = interesting(seed=2).astype(np.float32)
    x32 = x32[np.isfinite(x32) | np.isnan(x32)]
    got = torch.from_numpy(x32).to(torch.float8_e4m3fn).view(torch.uint8).numpy()
    want = nearest_codes(x32.astype(np.float64), "F8_E4M3")
    nan = np.isnan(x32)
    assert (got[~nan] == want[~nan]).all(), np.nonzero(got[~nan] != want[~nan])[0][:5]
    assert set(got[nan].tolist()) <= {0x7F, 0xFF}
    specials = torch.tensor([500.0, 1e30, float("inf"), -float("inf"), 464.0, 465.0], dtype=torch.float32)
    assert specials.to(torch.float8_e4m3fn).view(torch.uint8).tolist() == [0x7E, 0x7E, 0x7E, 0xFE, 0x7E, 0x7E]


def test_torch_float64_to_e4m3_rounds_twice_so_the_kernels_cannot_use_it():
    """torch's float64 -> float8_e4m3fn goes through float32: 1.0625 + 2^-40 lies above the midpoint of 1.0 and
    1.125 (so 1.125, code 0x39), but float32 drops the 2^-40 and the tie goes to even (1.0, 0x38). torch also
    keeps NaN's sign (0xFF); the kernels write 0x7F for every NaN."""
    x = torch.tensor([1.0625 + 2**-40, -float("nan")], dtype=torch.float64)
    assert x.to(torch.float8_e4m3fn).view(torch.uint8).tolist() == [0x38, 0xFF]
    assert round_e4m3(x).tolist() == [0x39, 0x7F]
    assert nearest_codes(x.numpy(), "F8_E4M3").tolist() == [0x39, 0x7F]
