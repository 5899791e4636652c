"""Our FP8 quantizer: float weights to F8_E4M3 codes and F32 scales, by the kernels' own re-quantization
(backends/call.py, rule 3: per group, scale = amax / 448 rounded once to float32; codes rounded once).

Used to write synthetic FP8 checkpoints for the tests and benchmarks; the tests also quantize with an
independent implementation (tests/fp8_data.py) and check the two agree.

    >>> codes, scales = quantize_fp8(weights_f32, "block", (128, 128))
"""

from __future__ import annotations

import numpy as np

from ..backends import get_backend
from ..backends.call import KernelCall, Operand, OutScale

_backend = None


def quantize_fp8(values: np.ndarray, kind: str, block=(128, 128)) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 codes, float32 scales) of a 2-D float32 or float64 array: per block_rows x block_cols block
    ("block", scales of shape [ceil(rows / br), ceil(cols / bc)]) or per row ("row", shape [rows, 1])."""
    global _backend
    if _backend is None:
        _backend = get_backend("auto")
    values = np.ascontiguousarray(values)
    rows, cols = values.shape
    dtype = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64"}[values.dtype]
    if kind == "block":
        scale_shape = (-(-rows // block[0]), -(-cols // block[1]))
    else:
        scale_shape, block = (rows, 1), (1, 1)
    codes = np.empty(rows * cols, np.uint8)
    scales = np.empty(scale_shape, np.float32)
    out_scale = OutScale(kind, [scales.reshape(-1).view(np.uint8)], cols, 0, block[0], block[1], rows=rows)
    call = KernelCall(rows * cols, "convert", [codes], "F8_E4M3", [[1.0]], cp=Operand(values.reshape(-1), dtype),
                      out_scale=out_scale)  # fmt: skip
    _backend.compute(call)
    return codes.reshape(rows, cols), scales


def layout_quantizer(values: np.ndarray, layout) -> tuple[np.ndarray, np.ndarray]:
    """synthetic.FP8Layout's quantize: quantize_fp8 with the layout's kind and block size."""
    return quantize_fp8(values, layout.kind, layout.block)
