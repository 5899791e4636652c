"""verify's own rounding (verification/rounding.py) and decoding (values.py) against exact rationals.

Every float64 below is rounded by Python's Fraction arithmetic, the definition of nearest-even, and the bits
compared: ties, one float64 ulp either side of ties, the target's subnormals and smallest normal, the
overflow threshold, float64 subnormals, signed zeros, infinities and NaNs with payloads.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from conftest import stable_seed

from chatvec_fast.verification.rounding import CANONICAL_NAN, ordered, quantize_e4m3, round_e4m3, round_to_bits
from chatvec_fast.verification.values import decode

# (stored mantissa bits, smallest normal exponent, largest exponent, sign bit, saturating)
FORMATS = {
    "BF16": (7, -126, 127, 15, False),
    "F16": (10, -14, 15, 15, False),
    "F32": (23, -126, 127, 31, False),
    "E4M3": (3, -6, 8, 7, True),
}


def exact_bits(x: float, fmt: str) -> int:
    """Bits of x rounded once to nearest-even by rational arithmetic (finite x, or Inf)."""
    mant, emin, emax, sign_bit, saturating = FORMATS[fmt]
    sign = (1 << sign_bit) if math.copysign(1.0, x) < 0 else 0
    top = (((emax + (1 << (sign_bit - mant - 1)) - 1) << mant) | ((1 << mant) - 2)) if saturating else None
    inf = ((1 << (sign_bit - mant)) - 1) << mant
    if math.isinf(x):
        return sign | (top if saturating else inf)
    a = abs(Fraction(x))
    if a == 0:
        return sign
    e = a.numerator.bit_length() - a.denominator.bit_length()
    e = e if Fraction(2) ** e <= a else e - 1
    e = max(e, emin)
    q = a / Fraction(2) ** (e - mant)
    n = math.floor(q)
    if q - n > Fraction(1, 2) or (q - n == Fraction(1, 2) and n % 2):
        n += 1
    if n == 1 << (mant + 1):
        e, n = e + 1, n >> 1
    bias = (1 << (sign_bit - mant - 1)) - 1
    if n < 1 << mant:  # subnormal (or zero)
        bits = n
    else:
        bits = ((e + bias) << mant) | (n - (1 << mant))
    if saturating:
        return sign | min(bits, top)
    return sign | min(bits, inf)


def interesting(fmt: str, seed: int) -> list[float]:
    mant, emin, emax, _, _ = FORMATS[fmt]
    rng = np.random.default_rng(seed)
    xs = [0.0, -0.0, math.inf, -math.inf, 5e-324, -5e-324, 2.0**-1022, 1e300, -1e300]
    for e in list(range(emin - mant - 3, emin + 3)) + list(range(emax - 2, emax + 2)) + [0, -1, 3]:
        for _ in range(12):
            k = int(rng.integers(0, 1 << (mant + 1)))
            tie = math.ldexp(2 * k + 1, e - mant - 1)  # halfway between two neighbours at exponent e
            plain = math.ldexp(float(rng.random()) + 1.0, e)
            for v in (tie, math.nextafter(tie, math.inf), math.nextafter(tie, 0.0), plain):
                xs += [v, -v]
    return xs


@pytest.mark.parametrize("fmt", ["BF16", "F16", "F32"])
def test_a_single_correct_rounding_to_the_output_dtype(fmt):
    seed = stable_seed("round", fmt)
    xs = interesting(fmt, seed)
    got = round_to_bits(np.array(xs, dtype=np.float64), fmt)
    want = [exact_bits(x, fmt) for x in xs]
    bad = [(x.hex(), hex(g), hex(w)) for x, g, w in zip(xs, got.tolist(), want) if g != w]
    assert not bad, f"seed {seed}: {len(bad)} of {len(xs)} wrong, first (x, got, want): {bad[:5]}"


def test_e4m3_codes_round_once_and_saturate():
    seed = stable_seed("round", "E4M3")
    xs = interesting("E4M3", seed)
    got = round_e4m3(np.array(xs, dtype=np.float64))
    want = [exact_bits(x, "E4M3") for x in xs]
    bad = [(x.hex(), hex(g), hex(w)) for x, g, w in zip(xs, got.tolist(), want) if g != w]
    assert not bad, f"seed {seed}: {len(bad)} of {len(xs)} wrong, first (x, got, want): {bad[:5]}"


@pytest.mark.parametrize("fmt", ["BF16", "F16", "F32", "F64"])
def test_every_nan_becomes_the_canonical_quiet_nan(fmt):
    payloads = [0x7FF8_0000_0000_0001, 0xFFF8_0000_0000_0000, 0x7FF0_0000_0000_0001, 0xFFFF_FFFF_FFFF_FFFF]
    nans = np.array(payloads, dtype=np.uint64).view(np.float64)
    assert set(round_to_bits(nans, fmt).tolist()) == {CANONICAL_NAN[fmt]}
    assert round_e4m3(nans).tolist() == [0x7F] * 4


def test_decoding_agrees_with_torch_on_every_fp8_code():
    torch = pytest.importorskip("torch")
    codes = np.arange(256, dtype=np.uint8)
    for dtype, name in ((torch.float8_e4m3fn, "F8_E4M3"), (torch.float8_e5m2, "F8_E5M2")):
        theirs = torch.from_numpy(codes.copy()).view(dtype).double().numpy()
        ours = decode(codes, name)
        assert np.array_equal(np.isnan(ours), np.isnan(theirs)), name
        assert np.array_equal(ours[~np.isnan(ours)], theirs[~np.isnan(theirs)]), name


def test_bf16_and_f16_decode_exactly():
    seed = stable_seed("decode")
    raw = np.random.default_rng(seed).integers(0, 1 << 16, 4099, dtype=np.uint16)
    for name in ("BF16", "F16"):
        values = decode(raw.view(np.uint8), name)
        back = round_to_bits(values, name)
        finite = ~np.isnan(values)
        assert np.array_equal(back[finite], raw[finite]), f"seed {seed}: {name} does not round-trip"


def test_group_scales_follow_the_contract():
    """amax / 448 rounded once to float32; a group of zeros (or of NaN and Inf only) gets scale 1."""
    x = np.array([3.0, -896.0, 0.0, 0.0, np.nan, np.inf, 1e-3, 2e-3])
    codes, scales = quantize_e4m3(x, np.array([0, 0, 1, 1, 2, 2, 3, 3]), 4)
    assert scales.tolist() == [2.0, 1.0, 1.0, np.float32(2e-3 / 448.0)]
    assert codes[:2].tolist() == [0x3C, 0xFE] and codes[4:6].tolist() == [0x7F, 0x7E]  # 1.5; -448; NaN; Inf -> 448


def test_ordered_keys_measure_ulps_across_zero():
    bits = np.array([0x0001, 0x8001, 0x3F80, 0x3F81], dtype=np.uint16)
    assert (ordered(bits)[1::2] - ordered(bits)[::2]).tolist() == [-2, 1]
