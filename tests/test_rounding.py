"""The reference's float64 -> bf16/f16 rounding, checked against an independent brute-force oracle.

The oracle sorts every finite value of the format and picks the nearest
neighbour of x by exact double comparisons (the midpoint of two neighbours
is exact in float64), ties to the even bit pattern, and Inf beyond the last
midpoint. It shares no code or method with reference.round_float64.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import BACKENDS, assert_bits_equal, bits, stable_seed

from chatvec_fast.backends import get_backend
from chatvec_fast.backends.call import KernelCall, Operand
from chatvec_fast.backends.reference import round_float64

FORMATS = {torch.bfloat16: (0x7F80, 0x7FC0), torch.float16: (0x7C00, 0x7E00)}


def finite_values(dtype):
    """(sorted non-negative finite values as float64, their bit patterns)."""
    pos = torch.arange(0, 0x8000, dtype=torch.int32).to(torch.int16).view(dtype).double()
    keep = torch.isfinite(pos)
    return pos[keep].numpy(), torch.arange(0, 0x8000)[keep].numpy()


def oracle(x: np.ndarray, dtype) -> np.ndarray:
    inf_bits, qnan = FORMATS[dtype]
    values, patterns = finite_values(dtype)
    mag = np.abs(x)
    hi_idx = np.searchsorted(values, mag, side="left").clip(1, len(values) - 1)
    lo, hi = values[hi_idx - 1], values[hi_idx]
    mid = (lo + hi) / 2  # exact: one more bit than the format has
    pick_hi = (mag > mid) | ((mag == mid) & (patterns[hi_idx] % 2 == 0))
    out = np.where(pick_hi, patterns[hi_idx], patterns[hi_idx - 1])
    out = np.where(mag <= values[0], patterns[0], out)  # zero
    top = values[-1]
    top_mid = top + (top - values[-2]) / 2  # halfway to the first value beyond the max (max is odd: ties go up)
    out = np.where(mag >= top_mid, inf_bits, out)
    out = np.where(mag == values[-1], patterns[-1], out)
    out = out | np.where(np.signbit(x), 0x8000, 0)
    out = np.where(np.isnan(x), qnan, out)
    return torch.from_numpy(out.astype(np.int64)).to(torch.int32).to(torch.int16).view(dtype)


def interesting_doubles(dtype, n=400_000, seed=0) -> torch.Tensor:
    g = np.random.default_rng(seed)
    values, _ = finite_values(dtype)
    nxt = np.nextafter
    picks = values[g.integers(0, len(values) - 1, n)]
    following = values[np.minimum(np.searchsorted(values, picks) + 1, len(values) - 1)]
    mids = (picks + following) / 2
    parts = [
        picks,
        mids,
        nxt(mids, np.inf),
        nxt(mids, -np.inf),  # representable, ties, just off ties
        g.standard_normal(n) * 0.02,  # weights
        np.ldexp(g.random(n) + 1, g.integers(-160, 140, n)),  # every binade incl. subnormal and overflow
        np.array([0.0, np.inf, np.nan, 5e-324, 1e308, values[-1], nxt(values[-1], np.inf)]),
    ]
    x = np.concatenate(parts)
    x = np.concatenate([x, -x])
    return torch.from_numpy(x)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "f16"])
def test_round_float64_matches_brute_force_oracle(dtype):
    x = interesting_doubles(dtype)
    assert_bits_equal(round_float64(x, dtype), oracle(x.numpy(), dtype), f"round_float64 -> {dtype}")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "f16"])
def test_every_value_of_the_format_round_trips(dtype):
    pattern = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16)
    values = pattern.view(dtype)
    finite = torch.isfinite(values) | torch.isinf(values)
    assert_bits_equal(round_float64(values[finite].double(), dtype), values[finite], "round trip")


def test_float32_output_is_one_hardware_rounding():
    x = interesting_doubles(torch.bfloat16, n=50_000)
    got = round_float64(x, torch.float32)
    want = x.to(torch.float32)
    nan = torch.isnan(want)
    assert_bits_equal(got[~nan], want[~nan])
    assert (bits(got[nan]) == 0x7FC00000).all()


def test_torch_cast_rounds_twice_so_the_reference_cannot_use_it():
    """Documents why round_float64 exists: torch's float64 -> bfloat16 goes through float32."""
    x = torch.tensor([1.0 + 2**-8 + 2**-30], dtype=torch.float64)  # just above a bf16 tie
    assert x.to(torch.bfloat16).item() == 1.0  # double rounding lands on the tie's even side
    assert round_float64(x, torch.bfloat16).item() == 1.0 + 2**-7  # correct: round up


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "f16"])
@pytest.mark.parametrize("backend_name", BACKENDS)
def test_the_kernels_round_like_the_brute_force_oracle(backend_name, dtype):
    """Each kernel's own rounding (the native kernel's on 64-bit patterns, Triton's on 32-bit halves), on ties,
    values one ulp of float64 off a tie (the sticky bit alone in the low half), every binade, subnormals,
    overflow, Inf and NaN: the convert mode from F64 is the rounding alone."""
    x = interesting_doubles(dtype, n=4_000 if backend_name == "triton" else 400_000, seed=stable_seed(dtype))
    name = {torch.bfloat16: "BF16", torch.float16: "F16"}[dtype]
    out = np.zeros(2 * x.numel(), np.uint8)
    call = KernelCall(x.numel(), "convert", [out], name, [[1.0]], cp=Operand(x.numpy().view(np.uint8), "F64"))
    get_backend(backend_name).compute(call)
    got = torch.from_numpy(out).view(dtype)
    assert_bits_equal(got, oracle(x.numpy(), dtype), f"{backend_name} -> {name}")
