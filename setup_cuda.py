"""The build decision and the build of the optional CUDA extension chatvec_fast._cuda (csrc/cuda/).

Built when nvcc is found: $CUDA_HOME/bin/nvcc, else `nvcc` on PATH (nothing else is searched, so hiding
both skips the build). CHATVEC_CUDA=1 requires it (no nvcc, or a failed compile, is an error);
CHATVEC_CUDA=0 skips it. nvcc links the CUDA runtime statically, so the module imports on a machine with no
GPU or driver and says "no CUDA device" when called; no torch and no libtorch at build time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
NAME = "chatvec_fast._cuda"
SOURCES = ["csrc/cuda/merge_kernel.cu", "csrc/cuda/bindings.cpp"]


def nvcc_flags() -> list[str]:
    """csrc/cuda/nvcc_flags.txt (why each flag: see that file)."""
    with open(os.path.join(HERE, "csrc", "cuda", "nvcc_flags.txt"), encoding="utf-8") as f:
        return [line.strip() for line in f if line.startswith("-")]


def find_nvcc(env=os.environ) -> str | None:
    """$CUDA_HOME/bin/nvcc when CUDA_HOME is set, else nvcc on env's PATH."""
    home = env.get("CUDA_HOME")
    if home and os.access(os.path.join(home, "bin", "nvcc"), os.X_OK):
        return os.path.join(home, "bin", "nvcc")
    return shutil.which("nvcc", path=env.get("PATH", ""))


def decide(env=os.environ) -> tuple[str | None, str]:
    """(nvcc to build with, or None to skip; the one line that says which). CHATVEC_CUDA=1 without nvcc
    raises RuntimeError naming the fix."""
    want = env.get("CHATVEC_CUDA", "")
    if want == "0":
        return None, f"chatvec-fast: skipping the CUDA kernel ({NAME}): CHATVEC_CUDA=0"
    nvcc = find_nvcc(env)
    if nvcc is None:
        if want == "1":
            raise RuntimeError(
                f"CHATVEC_CUDA=1 asks for the CUDA kernel ({NAME}) but no nvcc was found in $CUDA_HOME/bin "
                f"(CUDA_HOME={env.get('CUDA_HOME', 'unset')}) or on PATH; install the CUDA toolkit (nvcc 12.1 or "
                "newer), set CUDA_HOME to it, or unset CHATVEC_CUDA to build without the CUDA kernel"
            )
        return None, (f"chatvec-fast: skipping the CUDA kernel ({NAME}): no nvcc in $CUDA_HOME/bin or on PATH "
                      "(set CHATVEC_CUDA=1 to require it)")  # fmt: skip
    return nvcc, f"chatvec-fast: building the CUDA kernel ({NAME}) with {nvcc}"


def build(cmd, ext, nvcc: str):
    """Compiles and links ext with nvcc; cmd is the setuptools build_ext command (paths, include dirs)."""
    import sysconfig

    import pybind11

    out = cmd.get_ext_fullpath(ext.name)
    tmp = os.path.join(cmd.build_temp, "cuda")
    os.makedirs(tmp, exist_ok=True)
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    includes = [f"-I{pybind11.get_include()}", f"-I{sysconfig.get_paths()['include']}", "-Icsrc"]
    objects = []
    for src in SOURCES:
        obj = os.path.join(tmp, os.path.basename(src) + ".o")
        _run([nvcc, *nvcc_flags(), *includes, "-c", src, "-o", obj])
        objects.append(obj)
    _run([nvcc, "-shared", "-cudart=static", *[f for f in nvcc_flags() if f.startswith("-gencode")], *objects,
          "-o", out])  # fmt: skip


def _run(command: list[str]):
    print(" ".join(command), file=sys.stderr)
    subprocess.run(command, check=True, cwd=HERE)
