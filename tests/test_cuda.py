"""The cuda backend and its extension chatvec_fast._cuda, as far as a machine without a GPU can check them: the
build decision (nvcc found, hidden, required), the module's stub and argument checks, the backend's errors
and place in `auto` (never picked), and its packing of calls through the host run of the kernel's element code
(CHATVEC_CUDA_HOST=1, which tests/conftest.py sets without a GPU; the kernel grid in test_kernel.py and the FP8
tests run it too). The one test that needs a device says so when it skips."""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import assert_bits_equal, requires_native, stable_seed, tensor_call

import setup_cuda
from chatvec_fast.backends import DEVICE_BACKENDS, NAMES, availability, get_backend, resolve
from chatvec_fast.backends.call import KernelCall, Operand, Scale
from chatvec_fast.backends.reference_call import reference_call

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILT = importlib.util.find_spec("chatvec_fast._cuda") is not None
requires_extension = pytest.mark.skipif(not BUILT, reason="chatvec_fast._cuda not built (no nvcc at install)")
DEVICE = torch.cuda.is_available()


def env_without_nvcc() -> dict:
    """This environment with every PATH entry holding an nvcc removed and CUDA_HOME unset."""
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_HOME", "CHATVEC_CUDA")}
    dirs = os.environ.get("PATH", "").split(os.pathsep)
    env["PATH"] = os.pathsep.join(d for d in dirs if not os.path.exists(os.path.join(d, "nvcc")))
    return env


# ---- the build decision ------------------------------------------------------------------------------


def test_build_decision_skips_with_one_line_where_there_is_no_nvcc():
    nvcc, line = setup_cuda.decide(env_without_nvcc())
    assert nvcc is None and "skipping the CUDA kernel" in line and "\n" not in line


def test_cuda_home_wins_and_chatvec_cuda_0_skips(tmp_path):
    fake = tmp_path / "bin" / "nvcc"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert setup_cuda.decide({"CUDA_HOME": str(tmp_path), "PATH": ""})[0] == str(fake)
    assert setup_cuda.decide({"CUDA_HOME": str(tmp_path), "CHATVEC_CUDA": "0"})[0] is None


def test_chatvec_cuda_1_without_nvcc_fails_with_the_fix():
    with pytest.raises(RuntimeError, match=r"CHATVEC_CUDA=1 .* no nvcc .* install the CUDA toolkit"):
        setup_cuda.decide({**env_without_nvcc(), "CHATVEC_CUDA": "1"})
    # through setup.py itself, before anything is compiled
    r = subprocess.run([sys.executable, "setup.py", "--version"], cwd=ROOT, capture_output=True, text=True,
                       env={**env_without_nvcc(), "CHATVEC_CUDA": "1"}, timeout=120)  # fmt: skip
    assert r.returncode == 1 and r.stderr.startswith("error: CHATVEC_CUDA=1 asks for the CUDA kernel"), r.stderr
    assert "Traceback" not in r.stderr and r.stderr.count("\n") <= 1


@pytest.mark.slow
@requires_native
def test_build_without_nvcc_builds_the_cpu_extension_and_skips_cuda(tmp_path):
    """`setup.py build_ext` with nvcc hidden: chatvec_fast._C builds, _cuda is skipped with one line (~1-2 min)."""
    lib, tmp = tmp_path / "lib", tmp_path / "tmp"
    r = subprocess.run([sys.executable, "setup.py", "build_ext", "--build-lib", str(lib), "--build-temp", str(tmp)],
                       cwd=ROOT, capture_output=True, text=True, env=env_without_nvcc(), timeout=900)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    built = os.listdir(lib / "chatvec_fast")
    assert any(f.startswith("_C.") for f in built) and not any(f.startswith("_cuda.") for f in built), built
    assert sum("skipping the CUDA kernel" in line for line in r.stderr.splitlines()) == 1


def test_nvcc_flags_keep_float64_exact_and_target_sm_80_and_sm_90():
    flags = setup_cuda.nvcc_flags()
    assert "-fmad=false" in flags and "-ftz=false" in flags and "-prec-div=true" in flags
    assert not any("fast_math" in f or f == "-ftz=true" for f in flags), flags
    assert "-gencode=arch=compute_80,code=sm_80" in flags
    assert "-gencode=arch=compute_90,code=[sm_90,compute_90]" in flags


# ---- the module ----------------------------------------------------------------------------------------


@requires_extension
def test_stub_matches_the_bindings():
    import chatvec_fast._cuda as module

    stub = ast.parse(open(os.path.join(ROOT, "chatvec_fast", "_cuda.pyi"), encoding="utf-8").read())
    declared = {n.name: n for n in stub.body if isinstance(n, ast.FunctionDef)}
    assert set(declared) == {n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))}
    for name, node in declared.items():
        bound = ast.parse(f"def {getattr(module, name).__doc__.splitlines()[0]}: ...").body[0]
        assert [a.arg for a in node.args.args] == [a.arg for a in bound.args.args], name


@requires_extension
@pytest.mark.skipif(DEVICE, reason="a CUDA device is present")
def test_without_a_device_the_module_imports_and_says_so(monkeypatch):
    import chatvec_fast._cuda as module

    count, why = module.device_count()
    assert count == 0 and why.startswith("no CUDA device"), why
    assert module.runtime_version() >= 12000, module.runtime_version()
    monkeypatch.setenv("CHATVEC_CUDA_HOST", "0")
    with pytest.raises(RuntimeError, match="--backend cuda: no CUDA device"):
        get_backend("cuda")
    assert "needs a CUDA GPU" in availability.availability("cuda")


@requires_extension
def test_run_refuses_what_it_cannot_read():
    import chatvec_fast._cuda as module

    buf = np.zeros(64, np.uint8)
    p = buf.ctypes.data
    good = (p, 2, -1, 0, 1, 0, 1, 1, 0)
    args = dict(mode=0, n=4, inputs=[good, good, good], alphas=[0.5], outs=[p], out_dtype=2, out_scale=None,
                count=0, stream=0, on_device=False)  # fmt: skip
    module.run(**args)
    for change, message in [
        ({"inputs": [good, good, (p, 9, -1, 0, 1, 0, 1, 1, 0)]}, "cp: unknown dtype code"),
        ({"inputs": [good, (0, 2, -1, 0, 1, 0, 1, 1, 0), good]}, "chat: null address"),
        ({"inputs": [good, good, (p, 4, 1, 0, 1, 0, 1, 1, 0)]}, "a scaled operand needs scales"),
        ({"outs": [p] * 17, "alphas": [0.5] * 17}, "outs: 1 to 16"),
        ({"alphas": [0.5, 1.0]}, "alphas: need one row of 1 per output"),
        ({"out_dtype": 5}, "out_dtype: not an output dtype"),
        ({"out_dtype": 4}, "F8_E4M3 output needs out_scale"),
    ]:
        with pytest.raises(ValueError, match=message):
            module.run(**{**args, **change})


# ---- the backend -------------------------------------------------------------------------------------


def test_auto_never_picks_cuda(monkeypatch):
    """cuda has not run on a GPU: auto keeps native for files and triton for device destinations, even with
    a GPU in sight; cuda runs when asked for by name (or CHATVEC_BACKEND)."""
    monkeypatch.setattr(availability, "nvidia_driver", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.delenv("CHATVEC_BACKEND", raising=False)
    assert "cuda" in NAMES and "cuda" in DEVICE_BACKENDS
    assert resolve("auto") != "cuda" and resolve("auto", destination="device") == "triton"
    assert resolve("cuda") == "cuda"
    monkeypatch.setenv("CHATVEC_BACKEND", "cuda")
    assert resolve("auto") == "cuda"


@requires_extension
@requires_native
def test_more_outputs_than_one_launch_takes():
    """18 alphas: two launches (16 + 2), each output what native writes."""
    g = torch.Generator().manual_seed(stable_seed("cuda-outputs"))
    base, chat, cp = (torch.randn(333, generator=g).to(torch.bfloat16) for _ in range(3))
    alphas = [0.1 * k - 0.6 for k in range(18)]
    want, got = tensor_call(base, chat, cp, alphas, "BF16"), tensor_call(base, chat, cp, alphas, "BF16")
    get_backend("native").compute(want)
    get_backend("cuda").compute(got)
    for k, (w, o) in enumerate(zip(want.outs, got.outs)):
        assert_bits_equal(
            torch.from_numpy(o).view(torch.bfloat16), torch.from_numpy(w).view(torch.bfloat16), f"out[{k}]"
        )


@requires_extension
@requires_native
@pytest.mark.parametrize("dtype", ["BF16", "F16", "F32", "F64", "F8_E4M3", "F8_E5M2"])
@pytest.mark.parametrize("out", ["BF16", "F32", "F64"])
def test_the_16_byte_path_and_the_scalar_path_give_natives_bits(dtype, out):
    """Aligned buffers take the 16-byte steps (and a tail: n = 16k + 13), buffers 1 byte off take the
    element-at-a-time code; both write native's bits. (On a GPU the backend copies host buffers into fresh,
    aligned device memory, so there both take the 16-byte path.)"""
    n, width = 16 * 37 + 13, {"F64": 8, "F32": 4, "BF16": 2, "F16": 2}.get(dtype, 1)
    rng = np.random.default_rng(stable_seed("cuda-vec", dtype, out))
    raw = rng.integers(0, 256, (3, n * width + 17), dtype=np.uint8)
    if dtype.startswith("F8"):
        raw[(raw & 0x7F) >= 0x7C] = 0x38  # no NaN or Inf codes: finite merges
    outs = {}
    for backend, offset in [("native", 0), ("cuda", 0), ("cuda", 1)]:
        # np.zeros buffers are 16-byte aligned; a slice one byte in is not
        ops = [Operand(_placed(raw[i, : n * width], offset), dtype) for i in range(3)]
        assert all((op.buffer.ctypes.data % 16 == 0) == (offset == 0) for op in ops)
        width_out = {"F64": 8, "F32": 4, "BF16": 2}[out]
        buf = np.zeros(n * width_out + 16, np.uint8)[offset : offset + n * width_out]
        call = KernelCall(n, "merge", [buf], out, [[0.7]], base=ops[0], chat=ops[1], cp=ops[2])
        get_backend(backend).compute(call)
        outs[(backend, offset)] = bytes(buf)
    assert outs[("cuda", 0)] == outs[("native", 0)] and outs[("cuda", 1)] == outs[("native", 0)]


def _placed(data: np.ndarray, offset: int) -> np.ndarray:
    """data's bytes at `offset` into a fresh (16-byte aligned) buffer."""
    buf = np.zeros(data.size + 16, np.uint8)
    buf[offset : offset + data.size] = data
    return buf[offset : offset + data.size]


def _convert(backend: str, codes: np.ndarray, in_dtype: str, out_dtype: str) -> np.ndarray:
    """convert mode: every code widened, then rounded to out_dtype, by one backend; the output's bytes."""
    n = codes.size // {"F64": 8, "F32": 4, "BF16": 2, "F16": 2}.get(in_dtype, 1)
    width = {"F64": 8, "F32": 4, "BF16": 2, "F16": 2}[out_dtype]
    call = KernelCall(n, "convert", [np.zeros(n * width, np.uint8)], out_dtype, [[1.0]], cp=Operand(codes, in_dtype))
    get_backend(backend).compute(call)
    return call.outs[0]


def _awkward_doubles(seed: int) -> np.ndarray:
    """Random float64 bit patterns across every exponent, the halfway points of bf16 and f16 (ties), their
    subnormal ranges, overflow, +-0, +-Inf and NaNs with payloads: the narrowing's hard cases."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2**64, 200_000, dtype=np.uint64).view(np.float64).copy()
    scale = np.exp2(rng.uniform(-150, 20, 200_000))
    ties = (rng.integers(-(2**15), 2**15, 20_000) + 0.5) * np.exp2(rng.integers(-150, 20, 20_000).astype(float))
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 65504.0, 65520.0, 3.4e38, 1e-40, -5.9e-8, 448.0, 464.0])
    nan_payload = np.array([0x7FF0000000000001, 0xFFF8000000000123], dtype=np.uint64).view(np.float64)
    return np.concatenate([x, rng.standard_normal(200_000) * scale, ties, specials, nan_payload])


@requires_extension
@requires_native
def test_header_compiled_by_nvcc_widens_every_code_and_rounds_like_the_cpp_kernel():
    """dtype_convert.h's functions as nvcc compiles them (host code, the device functions' source) against
    the same header compiled by the C++ build: every bf16, f16, e4m3 and e5m2 code widened exactly, and
    420K awkward doubles rounded to bf16, f16, f32 and f64, bit for bit."""
    every16 = np.arange(2**16, dtype=np.uint16).view(np.uint8)
    every8 = np.arange(256, dtype=np.uint8)
    for codes, dtype in [(every16, "BF16"), (every16, "F16"), (every8, "F8_E4M3"), (every8, "F8_E5M2")]:
        assert np.array_equal(_convert("cuda", codes, dtype, "F64"), _convert("native", codes, dtype, "F64")), dtype
    doubles = _awkward_doubles(stable_seed("cuda-header")).view(np.uint8)
    for out in ("BF16", "F16", "F32", "F64"):
        got, want = _convert("cuda", doubles, "F64", out), _convert("native", doubles, "F64", out)
        differ = np.flatnonzero(got != want)
        assert differ.size == 0, f"F64 -> {out}: first differing byte {differ[:1]}"


def _scaled(values, kind: str, first_element: int, cols: int, seed: int) -> Operand:
    """FP8 e4m3 codes (random, NaN code excluded) with row or 128 x 128 block scales, at first_element."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, values, dtype=np.uint8)
    codes[(codes & 0x7F) == 0x7F] = 0x40
    rows = 128 if kind == "block" else 1
    first_row = first_element // cols // rows
    last_row = (first_element + values - 1) // cols // rows
    per_row = -(-cols // 128) if kind == "block" else 1
    scales = rng.uniform(0.001, 2.0, (last_row - first_row + 1) * per_row).astype(np.float32)
    block = {"block_rows": 128, "block_cols": 128} if kind == "block" else {}
    return Operand(codes, "F8_E4M3", Scale(kind, scales, cols, first_element, first_scale_row=first_row, **block))


@requires_extension
@pytest.mark.parametrize("kind", ["row", "block"])
@pytest.mark.parametrize("first_element", [7 * 1000, (2**32 // 1000 + 3) * 1000 + 11], ids=["32-bit", "64-bit"])
def test_scaled_inputs_past_2_to_the_32_take_the_64_bit_index(kind, first_element):
    """A chunk of a tensor beyond 2^32 elements runs the 64-bit index variant; both give the oracle's bits."""
    n, cols = 3001, 1000
    seed = stable_seed("cuda-wide", kind, first_element)
    ops = [_scaled(n, kind, first_element, cols, seed + i) for i in range(3)]
    call = KernelCall(n, "merge", [np.zeros(2 * n, np.uint8)], "BF16", [[0.7]], base=ops[0], chat=ops[1], cp=ops[2])
    get_backend("cuda").compute(call)
    want = reference_call(call)[0][0]
    got = torch.from_numpy(call.outs[0].view(np.int16)).view(torch.bfloat16)
    assert_bits_equal(got, want, f"{kind} first_element={first_element} seed={seed}")


@requires_extension
@requires_native
def test_pipeline_with_cuda_equals_native(triple, tmp_path):
    """A file-level merge with --backend cuda (host run without a GPU) writes native's bytes."""
    from test_triton import same_dir

    from chatvec_fast import merge

    paths = triple(cp_vocab=600)
    args = (paths["base"], paths["chat"], paths["cp"])
    merge(*args, str(tmp_path / "native"), 0.7, backend="native")
    merge(*args, str(tmp_path / "cuda"), 0.7, backend="cuda", chunk_elements=4096)
    same_dir(tmp_path / "native", tmp_path / "cuda")


@requires_extension
@requires_native
@pytest.mark.skipif(not DEVICE, reason="needs a CUDA device: device tensors in place, the 16-byte path")
def test_device_tensors_in_place_equal_native(monkeypatch):
    monkeypatch.setenv("CHATVEC_CUDA_HOST", "0")
    g = torch.Generator().manual_seed(stable_seed("cuda-device"))
    base, chat, cp = (torch.randn(1_000_003, generator=g).to(torch.bfloat16) for _ in range(3))
    want = tensor_call(base, chat, cp, [0.7], "BF16")
    get_backend("native").compute(want)
    ops = [Operand(t.cuda().view(torch.uint8), "BF16") for t in (base, chat, cp)]
    out = torch.empty(2 * base.numel(), dtype=torch.uint8, device="cuda")
    call = KernelCall(base.numel(), "merge", [out], "BF16", [[0.7]], base=ops[0], chat=ops[1], cp=ops[2])
    get_backend("cuda").compute(call)
    assert_bits_equal(out.cpu().view(torch.bfloat16), torch.from_numpy(want.outs[0]).view(torch.bfloat16), "device")
