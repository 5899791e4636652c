"""Builds the native extension chatvec_fast._C from csrc/ (pybind11, C++17).

No torch and no CUDA at build time. The kernel is compiled once per x86-64
level (baseline, v3, v4) through target pragmas and picked at run time, so the
wheel has no -march=native. A failed compile leaves a pure-Python install
(the torch backend still works) unless CHATVEC_REQUIRE_NATIVE=1.
"""

import glob
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import setup_cuda  # noqa: E402 - beside this file

# First, before any build tool is imported: CHATVEC_CUDA=1 without nvcc is one line with the fix, wherever
# setup.py runs (pip's isolated build, or a plain `python setup.py` where pybind11 may be missing).
try:
    NVCC, CUDA_DECISION = setup_cuda.decide()
except RuntimeError as exc:
    sys.exit(f"error: {exc}")
print(CUDA_DECISION, file=sys.stderr)

from pybind11.setup_helpers import Pybind11Extension, build_ext  # noqa: E402
from setuptools import Extension, find_packages, setup  # noqa: E402

REQUIRE_NATIVE = os.environ.get("CHATVEC_REQUIRE_NATIVE", "") not in ("", "0")

HERE = os.path.dirname(os.path.abspath(__file__))


def compile_flags() -> list[str]:
    """The flags of csrc/compile_flags.txt (why each: see that file), shared with CMake and the Makefile."""
    with open(os.path.join(HERE, "csrc", "compile_flags.txt"), encoding="utf-8") as f:
        return [line.strip() for line in f if line.startswith("-")]


COMPILE_ARGS = [*compile_flags(), "-fvisibility=hidden"]
if sys.platform.startswith("linux"):
    COMPILE_ARGS.append("-pthread")


class OptionalBuildExt(build_ext):
    """build_ext that may fail softly, with an explanation."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any compiler failure
            self._soft_fail(exc)

    def build_extension(self, ext):
        try:
            if ext.name == setup_cuda.NAME:
                setup_cuda.build(self, ext, NVCC)
            else:
                super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            self._soft_fail(exc, cuda=ext.name == setup_cuda.NAME)

    def _soft_fail(self, exc, cuda=False):
        if cuda:
            if os.environ.get("CHATVEC_CUDA") == "1":
                raise exc
            print(f"WARNING: the CUDA kernel did not build ({exc}); installing without it "
                  "(CHATVEC_CUDA=1 makes this an error).", file=sys.stderr)  # fmt: skip
            return
        if REQUIRE_NATIVE:
            raise exc
        print(
            "WARNING: chatvec-fast's native kernel did not compile; installing without it "
            f"({exc}). Merges fall back to the torch backend. Set CHATVEC_REQUIRE_NATIVE=1 to make this an error.",
            file=sys.stderr,
        )


ext = Pybind11Extension(
    "chatvec_fast._C",
    sorted(glob.glob("csrc/*.cpp")),
    include_dirs=["csrc"],
    cxx_std=17,
    extra_compile_args=COMPILE_ARGS,
    extra_link_args=["-pthread"] if sys.platform.startswith("linux") else [],
)

setup(
    # The package's stage folders (read, plan, run, write, backends), and kernels/ as chatvec_fast.kernels.
    packages=[*find_packages(include=["chatvec_fast", "chatvec_fast.*"]), "chatvec_fast.kernels"],
    package_dir={"chatvec_fast.kernels": "kernels"},
    package_data={"chatvec_fast": ["py.typed", "_C.pyi", "_cuda.pyi"]},
    # The CUDA kernel only where nvcc is (setup_cuda.py); its sources are listed for sdists and rebuilds.
    ext_modules=[ext, *([Extension(setup_cuda.NAME, setup_cuda.SOURCES)] if NVCC else [])],
    cmdclass={"build_ext": OptionalBuildExt},
    zip_safe=False,
)
