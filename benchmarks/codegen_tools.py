"""What a compiled kernel is, read from its PTX and cubin with the NVIDIA tools inside the triton wheel.

Registers, stack and local memory: `cuobjdump -res-usage`; spills: local-memory stores and loads in the SASS
(STL, LDL: a spilled register goes to local memory); PTX: fused float64 multiply-adds, flush-to-zero
conversions; SASS (`nvdisasm -c`): instructions by class, load and store widths.
"""

from __future__ import annotations

import collections
import os
import re
import subprocess
import tempfile

INT = {"IMAD", "IADD3", "IADD", "LOP3", "LOP", "SHF", "SHL", "SHR", "ISETP", "LEA", "IMNMX", "VIMNMX", "SEL",
       "IABS", "PRMT", "BMSK", "SGXT", "IMUL", "BFE", "BFI", "FLO", "POPC", "IDP", "BREV", "ICMP"}  # fmt: skip
FP64 = {"DFMA", "DADD", "DMUL", "DSETP", "DMNMX", "DSET"}
_LINE = re.compile(r"^\s*/\*([0-9a-f]{4,})\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)\s*(.*?);")


def tools() -> dict:
    """The wheel's cuobjdump and nvdisasm (TRITON_CUOBJDUMP_PATH etc. override them, as in triton)."""
    from triton import knobs

    return {"cuobjdump": knobs.nvidia.cuobjdump.path, "nvdisasm": knobs.nvidia.nvdisasm.path}


def _run(cmd) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()}")
    return r.stdout + r.stderr


def _is_int(op: str) -> bool:
    base = op.split(".")[0]
    if base.startswith("U") and base[1:] in INT | {"MOV"}:
        base = base[1:]  # the uniform datapath's integer work (UIADD3, ULOP3, ...)
    return base in INT


def sass_facts(sass: str) -> dict:
    """Instruction counts of the kernel's code (NOPs and the padding after its last EXIT left out)."""
    ops = [m.group(3) for m in map(_LINE.match, sass.splitlines()) if m]
    last = max(i for i, op in enumerate(ops) if op == "EXIT")
    ops = [op for op in ops[: last + 1] if op != "NOP"]
    names = collections.Counter(op.split(".")[0] for op in ops)
    return {
        "instructions": len(ops),
        "integer": sum(_is_int(op) for op in ops),
        "fp64": sum(names[n] for n in FP64),
        "DFMA": names["DFMA"],
        # a flushed subnormal in the data: F2I.FTZ only converts the reciprocal estimate of an integer division
        "ftz": sum(".FTZ" in op and not op.startswith("F2I") for op in ops),
        "calls": names["CALL"],  # 64-bit integer division and friends are subroutines
        "spill_stores": names["STL"],
        "spill_loads": names["LDL"],
        "loads": dict(collections.Counter(op for op in ops if op.startswith("LDG"))),
        "stores": dict(collections.Counter(op for op in ops if op.startswith("STG"))),
    }


def ptx_facts(ptx: str) -> dict:
    return {
        "fma.rn.f64": len(re.findall(r"\bfma\.rn\.f64\b", ptx)),
        "cvt.ftz": len(re.findall(r"\bcvt(?:\.\w+)*\.ftz\b", ptx)),
        "div.s64": len(re.findall(r"\bdiv\.s64\b", ptx)),
    }


def analyze(ptx: str, cubin: bytes) -> dict:
    """Every fact the code-generation test checks, for one compiled kernel."""
    t = tools()
    with tempfile.TemporaryDirectory() as tmp:
        cubin_path = os.path.join(tmp, "k.cubin")
        with open(cubin_path, "wb") as f:
            f.write(cubin)
        usage = _run([t["cuobjdump"], "-res-usage", cubin_path])
        m = re.search(r"REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)", usage)
        facts = {"registers": int(m[1]), "stack": int(m[2]), "shared": int(m[3]), "local": int(m[4])}
        facts.update(sass_facts(_run([t["nvdisasm"], "-c", cubin_path])))
    facts.update(ptx_facts(ptx))
    return facts


def problems(name: str, facts: dict, fusion: bool, divides: bool = False) -> list[str]:
    """What is wrong with a kernel compiled for the merge's exactness (fusion off). divides: the kernel divides
    in float64 (FP8 re-quantization), whose IEEE div.rn.f64 expands to DFMAs in SASS by design."""
    found = []
    if not fusion and facts["fma.rn.f64"]:
        found.append(f"{name}: {facts['fma.rn.f64']} fma.rn.f64 in the PTX (a fused multiply-add rounds once)")
    if not fusion and facts["DFMA"] and not divides:
        found.append(f"{name}: {facts['DFMA']} DFMA in the SASS")
    if facts["cvt.ftz"] or facts["ftz"]:
        found.append(f"{name}: flush-to-zero ({facts['cvt.ftz']} cvt.ftz, {facts['ftz']} .FTZ): subnormals lost")
    for what in ("spill_stores", "spill_loads", "stack", "local"):
        if facts[what]:
            found.append(f"{name}: {facts[what]} {what.replace('_', ' ')} (instructions or bytes)")
    return found
