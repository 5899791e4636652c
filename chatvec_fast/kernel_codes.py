"""The numbers the kernels agree on: dtype, mode and scale-kind codes, and how many vectors one call takes.

The one source. csrc/ holds the same values as C++ enums (dtype_convert.h DType; kernel_call.h Mode,
ScaleKind, kMaxVectors) and exports them as tables (_C.DTYPE_CODES, _C.MODE_CODES, _C.SCALE_KIND_CODES,
_C.NO_SCALE, _C.MAX_VECTORS); the Triton kernels (kernels/, installed as chatvec_fast.kernels) import them
from here. tests/test_kernel_codes.py checks both against this module.

A leaf: it imports nothing, so the kernels can import it without loading the package's stages.
"""

# safetensors dtype name -> kernel dtype code
DTYPE_CODES = {"F32": 0, "F16": 1, "BF16": 2, "F64": 3, "F8_E4M3": 4, "F8_E5M2": 5}

# KernelCall.mode -> code (backends/call.py describes the modes)
MODE_CODES = {"merge": 0, "apply": 1, "extract": 2, "convert": 3}

# Scale.kind / OutScale.kind -> code; an operand without a scale (value = decode(code)) has NO_SCALE
SCALE_KIND_CODES = {"tensor": 0, "row": 1, "block": 2}
NO_SCALE = -1

# Vectors one apply call takes: 16 natively (the staged path keeps one accumulator per output, so more
# vectors only cost more passes), 4 in Triton (one pointer argument per vector).
MAX_VECTORS = 16
MAX_TRITON_VECTORS = 4
