"""The kernel variants the pipeline launches, as the values of each kernel parameter (benchmarks/codegen.py
compiles them). A variant is one specialisation: dtype codes, mode, K and M, scale kinds and the shared layout
are compile-time constants; the divisibility of the element range and the row stride are specialised too.

Coverage, each value at least once: modes merge, apply (M = 1 to 4), extract, convert; input dtypes BF16, F16,
F32, F64 (saved vectors), F8_E4M3, F8_E5M2; output dtypes BF16, F16, F32, F64, and F64 results for an FP8
output with the quantize kernel (rows and blocks, aligned or not); K = 1, 2, 4, 8; scale kinds none, tensor,
row, block, and the shared-layout path (SHARED); the main launch (end divisible by 16) and the tail; the
autotuner's block sizes and warps for the bf16 merge (the configuration a GPU picks must not spill either).
"""

from __future__ import annotations

from dataclasses import dataclass

import triton.language as tl

DTYPES = {"F32": 0, "F16": 1, "BF16": 2, "F64": 3, "F8_E4M3": 4, "F8_E5M2": 5}  # kernel_codes.DTYPE_CODES
MODES = {"merge": 0, "apply": 1, "extract": 2, "convert": 3}
SCALES = {None: -1, "tensor": 0, "row": 1, "block": 2}
BITS = {0: tl.int32, 1: tl.int16, 2: tl.int16, 3: tl.int64, 4: tl.uint8, 5: tl.uint8}  # launch.BITS_DTYPE
CHUNK = 1 << 20  # the pipeline's chunk: the main launch's end
TAIL = CHUNK + 5  # a chunk whose last 5 elements take the tail launch
AUTOTUNE = [(1024, 4), (2048, 4), (2048, 8), (4096, 4), (4096, 8)]  # kernels/launch.py _GPU_CONFIGS


@dataclass(frozen=True)
class Variant:
    name: str
    kernel: str  # "merge" (chatvec_kernel) or "quantize" (fp8_quantize_kernel)
    values: dict
    wide_loads: bool = False  # must load 16 bytes at a time (the bf16 merge's main launch)


def merge_variant(mode="merge", inputs=("BF16",) * 3, out="BF16", k=1, m=1, scale=None, shared=False, tail=False,
                  block=1024, warps=4) -> Variant:  # fmt: skip
    """chatvec_kernel as launch() calls it. inputs: the operands' dtypes in slot order (merge/extract: base,
    chat, cp; apply: cp then vectors; convert: cp); scale: the scale kind of the FP8 operands."""
    slots = {"merge": ("BASE", "CHAT", "CP"), "extract": ("BASE", "CHAT"), "convert": ("CP",),
             "apply": ("CP", "CHAT", "V1", "V2", "V3")[: 1 + m]}[mode]  # fmt: skip
    codes = dict(zip(slots, (DTYPES[d] for d in inputs)))
    first = BITS[codes[slots[0]]]  # launch() passes the first operand for the slots a mode leaves out
    v = {f"{s.lower()}_ptr": BITS[codes[s]] if s in codes else first for s in ("BASE", "CHAT", "CP", "V1", "V2", "V3")}
    out_code = DTYPES[out]
    v.update(scales_ptr=tl.float32, meta_ptr=tl.int64, out_ptr=BITS[out_code], alphas_ptr=tl.float64,
             count_ptr=tl.int64)  # fmt: skip
    end = TAIL if tail else CHUNK
    v.update(start=CHUNK if tail else 0, end=end, stride=-(-end // 16) * 16, col0=7, row_base=3, row_mod=5)
    for s in ("BASE", "CHAT", "CP", "V1", "V2", "V3"):
        v[s] = codes.get(s, 0)
        fp8 = s in codes and codes[s] in (4, 5)
        v[f"S_{s}"] = SCALES[scale] if fp8 else -1
    layout = (SCALES[scale], 7168, 128, 128) if shared and scale == "block" else (SCALES[scale], 7168, 1, 7168)
    v.update(OUT=out_code, MODE=MODES[mode], K=k, M=m, BLOCK=block, num_warps=warps)
    v.update(zip(("SHARED", "COLS", "BLOCK_ROWS", "BLOCK_COLS"), layout if shared else (-1, 0, 0, 0)))
    name = f"{mode}_{'-'.join(inputs)}_to_{out}_K{k}" + (f"_M{m}" if mode == "apply" else "")
    name += (f"_{scale}" if scale else "") + ("_shared" if shared else "") + ("_tail" if tail else "")
    name += f"_b{block}w{warps}" if (block, warps) != (1024, 4) else ""
    wide = mode == "merge" and inputs == ("BF16",) * 3 and not tail
    return Variant(name, "merge", v, wide_loads=wide)


def quantize_variant(kind: str, cols: int, aligned: bool) -> Variant:
    """fp8_quantize_kernel as launch_quantize() calls it, for one output row of groups."""
    block_rows, block_cols = (128, 128) if kind == "block" else (1, cols)
    n = cols * block_rows
    per_row = -(-cols // block_cols)
    stride = n if aligned else -(-n // 16) * 16
    v = {"x_ptr": tl.float64, "out_ptr": tl.uint8, "scales_ptr": tl.float32, "n": n, "stride": stride, "cols": cols,
         "block_rows": block_rows, "block_cols": block_cols, "per_row": per_row, "groups": per_row,
         "BLOCK": min(1024, 1 << (block_cols - 1).bit_length())}  # fmt: skip
    return Variant(f"quantize_{kind}_{cols}", "quantize", v)


def quick_variants() -> list[Variant]:
    """The default test run's: the bf16 merge (main launch and tail, K = 1 and 4) and an FP8 block merge."""
    return [merge_variant(), merge_variant(tail=True), merge_variant(k=4),
            merge_variant(inputs=("F8_E4M3",) * 3, scale="block", shared=True)]  # fmt: skip


def variants() -> list[Variant]:
    out = [merge_variant(block=b, warps=w) for b, w in AUTOTUNE]
    out += [merge_variant(k=4, block=b, warps=w) for b, w in AUTOTUNE]
    out += [merge_variant(k=k, tail=tail) for k in (1, 2, 4, 8) for tail in (False, True)][1:]
    out += [merge_variant(inputs=(d,) * 3, out=d, k=k) for d in ("F16", "F32") for k in (1, 4)]
    out += [merge_variant(inputs=("BF16", "F32", "F16"), out=o) for o in ("F32", "F64")]
    for dtype in ("F8_E4M3", "F8_E5M2"):
        for scale in ("tensor", "row", "block"):
            out.append(merge_variant(inputs=(dtype,) * 3, scale=scale))
        out += [merge_variant(inputs=(dtype,) * 3, scale=s, shared=True, k=k) for s in ("row", "block")
                for k in (1, 4)]  # fmt: skip
    out.append(merge_variant(inputs=("F8_E4M3", "F8_E4M3", "BF16"), scale="block", shared=True))
    out += [merge_variant(inputs=("F8_E4M3",) * 3, out="F64", scale="block", shared=True, tail=t) for t in (0, 1)]
    out += [merge_variant("apply", ("BF16",) + ("F32",) * m, k=k, m=m) for m in (1, 2, 3, 4) for k in (1, 4)]
    out += [merge_variant("apply", ("BF16", "F64"), m=1), merge_variant("apply", ("F8_E4M3", "F32"), scale="block")]
    out += [merge_variant("extract", ("BF16", "BF16"), out=o) for o in ("F32", "F64", "BF16")]
    out += [merge_variant("extract", ("F8_E4M3",) * 2, out="F32", scale="block", shared=True)]
    out += [merge_variant("convert", (d,), out="BF16", k=k) for d in ("F32", "F64") for k in (1, 2)]
    out += [merge_variant("convert", ("F64",), out="F64", tail=True)]
    out += [quantize_variant(kind, cols, aligned) for kind in ("row", "block") for cols, aligned in
            ((4096, True), (4099, False))]  # fmt: skip
    return out
