"""Compiles the Triton kernels ahead of time for sm_80 and sm_90, with no GPU, and checks the code they become.

The Triton interpreter (TRITON_INTERPRET=1, which the tests use) never compiles: a kernel that runs there may
not compile for any GPU. This compiles every variant the pipeline launches (each mode, each dtype class in and
out, K and M, each scale kind and the shared-layout path, the main launch (end divisible by 16) and the tail)
with triton.compile(ASTSource(...), target=GPUTarget("cuda", arch, 32)), specialised as a launch would be
(pointers 16-byte aligned; ints divisible by 16 marked so; ints equal to 1 made constants), and checks each:
no fused float64 multiply-add (fma.rn.f64 in the PTX, DFMA in the SASS) with enable_fp_fusion=False, no
flush-to-zero, no spills, stack or local memory; and 16-byte loads in the bf16 merge's main launch. One
compile with fusion on must show fma.rn.f64, so the check can see a regression.

    python -m benchmarks.codegen                 # every variant, sm_80 and sm_90: a table; exit 1 on a problem
    python -m benchmarks.codegen --quick         # a handful (the default test run does these)
    python -m benchmarks.codegen --json facts.json

Runs with TRITON_INTERPRET unset (under the interpreter @triton.jit gives an interpreted function) and a fresh
TRITON_CACHE_DIR (a warm cache would hide a compile error). Needs only triton (no torch): CI runs it with the
newest triton and, in a second environment, with triton 3.6, the GPU machines' version.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile

os.environ.pop("TRITON_INTERPRET", None)  # before triton is imported
_CACHE = tempfile.mkdtemp(prefix="chatvec-codegen-")
os.environ["TRITON_CACHE_DIR"] = _CACHE

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import triton  # noqa: E402
import triton.language as tl  # noqa: E402
from codegen_tools import analyze, problems  # noqa: E402
from codegen_variants import quick_variants, variants  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

_SHORT = {tl.int16: "i16", tl.int32: "i32", tl.int64: "i64", tl.uint8: "u8", tl.float32: "fp32", tl.float64: "fp64"}


def kernels():
    """(chatvec_kernel, fp8_quantize_kernel), from the installed package or, without one, from the checkout
    (kernels/ is installed as chatvec_fast.kernels: here it is registered under that name by hand)."""
    try:
        from chatvec_fast.kernels.merge import chatvec_kernel
        from chatvec_fast.kernels.quantize import fp8_quantize_kernel
    except ImportError:
        import importlib.util

        root = os.path.dirname(HERE)
        sys.path.insert(0, root)
        folder = os.path.join(root, "kernels")
        spec = importlib.util.spec_from_file_location("chatvec_fast.kernels", os.path.join(folder, "__init__.py"),
                                                      submodule_search_locations=[folder])  # fmt: skip
        sys.modules["chatvec_fast.kernels"] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        from chatvec_fast.kernels.merge import chatvec_kernel
        from chatvec_fast.kernels.quantize import fp8_quantize_kernel
    return {"merge": chatvec_kernel, "quantize": fp8_quantize_kernel}


def specialization(fn, values: dict):
    """(signature, constexprs, attrs) as a launch builds them: pointers '*<type>' 16-byte aligned; ints i32 (i64
    beyond), divisible by 16 marked tt.divisibility; an int equal to 1, and every tl.constexpr parameter, a
    constant. The same in triton 3.6 and 3.9 (3.9 lists constants' attrs too, empty: accepted either way)."""
    missing = [name for name in fn.arg_names if name not in values]
    if missing:
        raise KeyError(f"{fn.__name__}: the variant gives no value for {missing}")
    signature, constexprs, attrs = {}, {}, {}
    for i, name in enumerate(fn.arg_names):
        v = values[name]
        if fn.params[i].is_constexpr or (isinstance(v, int) and not isinstance(v, bool) and v == 1):
            signature[name], constexprs[(i,)] = "constexpr", v
        elif isinstance(v, int):
            signature[name] = "i32" if -(2**31) <= v < 2**31 else "i64"
            attrs[(i,)] = [["tt.divisibility", 16]] if v % 16 == 0 else []
        else:
            signature[name] = "*" + _SHORT[v]
            attrs[(i,)] = [["tt.divisibility", 16]]
    return signature, constexprs, attrs


def compile_one(fn, values: dict, arch: int, fusion: bool = False) -> dict:
    options = {"num_warps": values.get("num_warps", 4), "enable_fp_fusion": fusion}
    values = {k: v for k, v in values.items() if k != "num_warps"}
    compiled = triton.compile(ASTSource(fn, *specialization(fn, values)), target=GPUTarget("cuda", arch, 32),
                              options=options)  # fmt: skip
    return analyze(compiled.asm["ptx"], compiled.asm["cubin"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="80,90", help="compute capabilities, comma separated")
    ap.add_argument("--quick", action="store_true", help="a handful of variants (the default test run)")
    ap.add_argument("--json", default=None, help="write every variant's facts here")
    a = ap.parse_args(argv)
    fns, found, facts = kernels(), [], {}
    chosen = quick_variants() if a.quick else variants()
    print(f"triton {triton.__version__}: {len(chosen)} variants x sm_{a.arch.replace(',', ', sm_')}")
    try:
        for arch in map(int, a.arch.split(",")):
            for v in chosen:
                name = f"sm{arch}/{v.name}"
                f = facts[name] = compile_one(fns[v.kernel], v.values, arch)
                found += problems(name, f, fusion=False, divides=v.kernel == "quantize")
                if v.wide_loads and "LDG.E.128" not in f["loads"]:
                    found.append(f"{name}: no 16-byte loads (LDG.E.128); loads {f['loads']}")
                print(f"  {name:58s} {f['registers']:4d} regs  {f['instructions']:5d} instr ({f['integer']:4d} int, "
                      f"{f['calls']} calls)  loads {f['loads']}")  # fmt: skip
            canary = chosen[0]  # fusion on: the check must see the fused multiply-adds it is there to refuse
            fused = compile_one(fns[canary.kernel], canary.values, arch, fusion=True)
            if not fused["fma.rn.f64"]:
                found.append(f"sm{arch}/{canary.name} with fusion on shows no fma.rn.f64: the check cannot see one")
            facts[f"sm{arch}/{canary.name} (fusion on)"] = fused
    finally:
        shutil.rmtree(_CACHE, ignore_errors=True)
    if a.json:
        with open(a.json, "w") as out:
            json.dump({"triton": triton.__version__, "facts": facts, "problems": found}, out, indent=1)
    for line in found:
        print("PROBLEM", line)
    print(f"{len(facts)} compiled, {len(found)} problems")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
