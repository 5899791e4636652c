"""What the CUDA kernel (csrc/cuda/) compiles to, read from the built extension chatvec_fast._cuda: per kernel
and architecture (sm_80, sm_90) its registers, stack and local memory, instruction counts, fp64 ops, DFMA,
flush-to-zero instructions, spills and load widths, with the checks of benchmarks/codegen_tools.py.

    python -m benchmarks.codegen_cuda          # the table of docs/PERFORMANCE.md; exit 1 on a problem
    python -m benchmarks.codegen_cuda --json facts.json

The tools: cuobjdump and nvdisasm from $CUDA_HOME/bin or PATH, else the ones in the triton wheel.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

from benchmarks.codegen_tools import problems, ptx_facts, sass_facts

NAMES = {"t": "16-bit", "f": "f32", "d": "f64", "h": "8-bit"}
DTYPES = {0: "f32", 1: "f16", 2: "bf16", 3: "f64", 4: "e4m3", 5: "e5m2"}
PASSES = {0: "store", 1: "fp8 amax", 2: "fp8 quantize"}
DIVIDES = ("fp8 quantize", "group_scales")  # IEEE float64 division: DFMAs by design (codegen_tools.problems)


def tools() -> dict:
    found = {}
    for tool in ("cuobjdump", "nvdisasm"):
        home = os.environ.get("CUDA_HOME")
        path = os.path.join(home, "bin", tool) if home else None
        found[tool] = path if path and os.access(path, os.X_OK) else shutil.which(tool)
    if None in found.values():
        from benchmarks.codegen_tools import tools as triton_tools

        found = {k: v or triton_tools()[k] for k, v in found.items()}
    return found


def _run(cmd, cwd=None) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    if r.returncode:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()}")
    return r.stdout


def label(mangled: str) -> str:
    """A readable name: 'merge_vec bf16->f32', 'merge_any store (32-bit index)', 'group_scales'."""
    m = re.search(r"merge_vecI([a-z])Li(\d)ELi(\d)ELi(\d)E", mangled)
    if m:
        return f"merge_vec {DTYPES[int(m[2])]}->{DTYPES[int(m[3])]}"
    m = re.search(r"merge_anyILi(\d)E([jm])E", mangled)
    if m:
        return f"merge_any {PASSES[int(m[1])]} ({'32' if m[2] == 'j' else '64'}-bit index)"
    return "group_scales" if "group_scales" in mangled else mangled


def _split(text: str, start: str) -> dict[str, str]:
    """Text per kernel: sections that begin at lines matching `start` (a regex with the name as group 1)."""
    parts, name = {}, None
    for line in text.splitlines():
        m = re.match(start, line)
        if m:
            name = m[1]
            parts[name] = ""
        if name:
            parts[name] += line + "\n"
    return parts


def analyze(so_path: str) -> dict[str, dict[str, dict]]:
    """{arch: {kernel label: facts}} for every kernel of the extension."""
    t = tools()
    ptx = _split(_run([t["cuobjdump"], "-ptx", so_path]), r"^\s*\.(?:visible\s+)?\.?entry\s+(\w+)\(")
    out: dict[str, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        _run([t["cuobjdump"], "-xelf", "all", os.path.abspath(so_path)], cwd=tmp)
        for cubin in sorted(os.listdir(tmp)):
            arch = re.search(r"\.(sm_\d+)\.cubin$", cubin)[1]
            path = os.path.join(tmp, cubin)
            usage = _run([t["cuobjdump"], "-res-usage", path])
            resources = dict(re.findall(r"Function (\w+):\s*\n\s*(REG:\d+ STACK:\d+ SHARED:\d+ LOCAL:\d+)", usage))
            if not resources:
                continue  # the host-only objects' empty cubins
            sass = _split(_run([t["nvdisasm"], "-c", path]), r"^\.text\.(\w+):")
            for name, res in resources.items():
                reg, stack, shared, local = map(int, re.findall(r"\d+", res))
                facts = {"registers": reg, "stack": stack, "shared": shared, "local": local}
                facts.update(sass_facts(sass[name]))
                facts.update(ptx_facts(ptx.get(name, "")))
                out.setdefault(arch, {})[label(name)] = facts
    return out


def check(facts: dict[str, dict[str, dict]]) -> list[str]:
    """Problems: codegen_tools.problems for each kernel, 16-byte loads in every merge_vec. The 64-bit-index
    variants (tensors past 2^32 elements) call the 64-bit division subroutine, whose ABI may keep a register
    pair on the stack: allowed there and shown in the table."""
    found = []
    for arch, kernels in facts.items():
        for name, f in kernels.items():
            wide = "64-bit index" in name
            for p in problems(f"{arch} {name}", f, fusion=False, divides=any(d in name for d in DIVIDES)):
                if not (wide and re.search(r"(spill \w+|stack|local) \(", p)):
                    found.append(p)
            if name.startswith("merge_vec") and not any(".128" in op for op in f["loads"]):
                found.append(f"{arch} {name}: no 16-byte loads ({f['loads']})")
    return found


def table(facts: dict[str, dict[str, dict]]) -> str:
    head = ["arch", "kernel", "registers", "stack", "instructions", "fp64", "DFMA", ".FTZ", "spills (STL/LDL)", "loads",
            "stores"]  # fmt: skip
    rows = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for arch, kernels in sorted(facts.items()):
        for name, f in sorted(kernels.items()):
            loads, stores = (", ".join(f"{op} x{n}" for op, n in sorted(f[k].items())) for k in ("loads", "stores"))
            cells = [arch, name, f["registers"], f["stack"], f["instructions"], f["fp64"], f["DFMA"], f["ftz"],
                     f"{f['spill_stores']}/{f['spill_loads']}", loads, stores]  # fmt: skip
            rows.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", help="write the facts here")
    a = ap.parse_args(argv)
    import chatvec_fast._cuda as ext

    facts = analyze(ext.__file__)
    print(table(facts))
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump(facts, f, indent=1)
    found = check(facts)
    for p in found:
        print("PROBLEM:", p, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
