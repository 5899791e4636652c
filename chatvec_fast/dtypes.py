"""safetensors dtype names, their sizes, and the codes the kernels use."""

from __future__ import annotations

from .kernel_codes import DTYPE_CODES

# Bits per element of every dtype the safetensors format defines (F4 and the
# F6 types are packed below a byte).
BITS = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "I64": 64,
    "U64": 64,
    "F64": 64,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
}

# The dtypes the kernels read, and their codes (kernel_codes.py, shared with csrc/ and kernels/).
KERNEL_CODES = DTYPE_CODES
FP8 = frozenset({"F8_E4M3", "F8_E5M2"})  # codes whose values are decode(code) * scale
KERNEL_OUTPUTS = frozenset({"F32", "F16", "BF16", "F64", "F8_E4M3"})  # F8_E4M3 with per-group scales
MERGEABLE = frozenset({"F32", "F16", "BF16"})  # model tensors the planner applies the formula to
VECTOR_DTYPES = frozenset({"F32", "F16", "BF16", "F64"})  # a saved chat vector may also be F64

# --dtype spellings.
USER_NAMES = {
    "bf16": "BF16",
    "bfloat16": "BF16",
    "f16": "F16",
    "fp16": "F16",
    "float16": "F16",
    "f32": "F32",
    "fp32": "F32",
    "float32": "F32",
    "f64": "F64",
    "fp64": "F64",
    "float64": "F64",
    # FP8 output: cp's FP8 weights stay FP8 (F8_E4M3, re-quantized in cp's layout); nothing else changes
    "fp8": "F8_E4M3",
    "f8": "F8_E4M3",
    "f8_e4m3": "F8_E4M3",
}

# config.json's torch_dtype for each output dtype.
TORCH_NAMES = {"BF16": "bfloat16", "F16": "float16", "F32": "float32", "F64": "float64"}


def nbytes(dtype: str, numel: int) -> int:
    """Bytes that `numel` elements of `dtype` occupy (sub-byte types rounded up)."""
    return (numel * BITS[dtype] + 7) // 8


def itemsize(dtype: str) -> int:
    """Bytes per element of a byte-sized dtype."""
    return BITS[dtype] // 8


def parse_user_dtype(name: str) -> str:
    try:
        return USER_NAMES[name.lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}: expected one of bf16, f16, f32, f64, fp8") from None
