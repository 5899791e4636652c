"""Shared helpers: realistic random data and comparisons that print where they differ."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import signal
import subprocess
import sys
import zlib

import pytest
import torch

# Without a GPU the Triton kernels run on the CPU in triton's interpreter; the variable must be set
# before triton is first imported.
# Likewise the cuda backend runs its element code (nvcc-compiled host code) on the CPU.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
    os.environ.setdefault("CHATVEC_CUDA_HOST", "1")

from chatvec_fast import _native
from chatvec_fast.backends.reference import TORCH_DTYPES
from chatvec_fast.backends.reference import ulp_distance as reference_ulp_distance
from chatvec_fast.testing.calls import as_buffer, call_outputs, oracle_outputs, tensor_call  # noqa: F401 - for the tests

requires_native = pytest.mark.skipif(not _native.available, reason="native module not built (see _native.py)")
TRITON = importlib.util.find_spec("triton") is not None
requires_triton = pytest.mark.skipif(not TRITON, reason="triton not installed (pip install 'chatvec-fast[gpu]')")
CUDA_EXTENSION = importlib.util.find_spec("chatvec_fast._cuda") is not None
requires_cuda_extension = pytest.mark.skipif(
    not CUDA_EXTENSION, reason="chatvec_fast._cuda not built (no nvcc at install; CHATVEC_CUDA=1 pip install -e .)"
)

# The backends every kernel test runs, each against the float64 oracle (backends/reference_call.py). triton
# runs in its interpreter without a GPU, cuda its element code on the host (CHATVEC_CUDA_HOST=1). The
# `torch` backend IS the oracle applied to buffers: comparing it with the oracle would test nothing, so only
# tests with an oracle of their own (tests/fp8_data.py, IEEE rules written out) take WITH_TORCH;
# tests/test_kernel.py checks its buffer handling against native.
BACKENDS = [
    pytest.param("native", marks=requires_native, id="native"),
    pytest.param("triton", marks=requires_triton, id="triton"),
    pytest.param("cuda", marks=requires_cuda_extension, id="cuda"),
]
WITH_TORCH = [*BACKENDS, pytest.param("torch", id="torch")]


def default_sigint():
    """A Popen preexec_fn: Ctrl-C as a terminal delivers it. A test run started in the background from a script
    (`pytest ... &`) passes SIGINT on ignored, and Python then never raises KeyboardInterrupt in the child."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stable_seed(*params) -> int:
    """A seed from a test's parameters that is the same in every process (hash() of a str or tuple is not:
    PYTHONHASHSEED salts it); print it in failure messages."""
    return zlib.crc32(repr(params).encode())


SCALE = 0.02  # weights ~ N(0, 0.02^2)
DELTA = 0.002  # fine-tuning deltas ~ N(0, 0.002^2)


def realistic_triple(shape, dtypes, seed, hostile=False):
    """base ~ N(0, 0.02), chat = base + N(0, 0.002), cp = base + N(0, 0.002), in the given dtypes.

    hostile=True sprinkles zeros, signed zeros, Inf, NaN, bf16/f16 subnormals and
    near-overflow values over ~1% of the elements.
    """
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(shape, generator=g, dtype=torch.float64) * SCALE
    chat = base + torch.randn(shape, generator=g, dtype=torch.float64) * DELTA
    cp = base + torch.randn(shape, generator=g, dtype=torch.float64) * DELTA
    out = []
    for t, dtype in zip((base, chat, cp), dtypes):
        t = t.clone()
        if hostile and t.numel():
            flat = t.view(-1)
            specials = torch.tensor(
                [0.0, -0.0, float("inf"), -float("inf"), float("nan"), 2**-130, -(2**-20), 3.3e38, 65000.0, 1e-7],
                dtype=torch.float64,
            )
            idx = torch.randint(0, flat.numel(), (max(1, flat.numel() // 100),), generator=g)
            flat[idx] = specials[torch.randint(0, len(specials), (len(idx),), generator=g)]
        out.append(t.to(TORCH_DTYPES[dtype]))
    return out


def bits(t: torch.Tensor) -> torch.Tensor:
    """Integer view of a float tensor, for bit-exact comparison."""
    return t.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])


def assert_bits_equal(got: torch.Tensor, want: torch.Tensor, what: str = ""):
    """Bit-for-bit equality (NaN payloads included); on failure shows the first differing elements."""
    assert got.dtype == want.dtype and got.shape == want.shape, (
        f"{what}: {got.dtype}{tuple(got.shape)} vs {want.dtype}{tuple(want.shape)}"
    )
    diff = (bits(got) != bits(want)).reshape(-1)
    if diff.any():
        idx = diff.nonzero().reshape(-1)[:8].tolist()
        g, w = got.reshape(-1), want.reshape(-1)
        rows = "\n".join(
            f"  [{i}] got {g[i].item()!r} ({bits(g)[i].item() & 0xFFFFFFFF:#x}) "
            f"want {w[i].item()!r} ({bits(w)[i].item() & 0xFFFFFFFF:#x})"
            for i in idx
        )
        pytest.fail(f"{what}: {int(diff.sum())} of {diff.numel()} elements differ; first:\n{rows}")


def ulp_distance(got: torch.Tensor, want: torch.Tensor) -> torch.Tensor:
    """|got - want| in ulps of the output format (backends/reference.py; both-NaN counts as 0)."""
    return reference_ulp_distance(got, want)


def file_digests(*dirs) -> dict[str, str]:
    """sha256 of every file under the given directories (to prove inputs are untouched)."""
    out = {}
    for d in dirs:
        for root, _, files in os.walk(d):
            for f in files:
                p = os.path.join(root, f)
                with open(p, "rb") as fh:
                    out[p] = hashlib.sha256(fh.read()).hexdigest()
    return out


def chatvec_command(command: str, paths: dict, out, *extra: str) -> list[str]:
    """`python -m chatvec_fast COMMAND --base .. --chat .. --cp .. --out OUT EXTRA...` for subprocess tests."""
    inputs = [arg for role in ("base", "chat", "cp") if role in paths for arg in (f"--{role}", paths[role])]
    return [sys.executable, "-m", "chatvec_fast", command, *inputs, "--out", str(out), *extra]


@pytest.fixture
def triple(tmp_path):
    """A factory for tiny synthetic Llama triples: triple(cp_vocab=..., tie=..., shard_bytes=...)."""
    from chatvec_fast.testing.synthetic import make_triple

    def make(name="models", **kwargs):
        kwargs.setdefault("shard_bytes", {"base": None, "chat": 100_000, "cp": 60_000})
        return make_triple(str(tmp_path / name), "tiny", **kwargs)

    return make


def cli(*args, env=None, timeout=300, **kwargs) -> subprocess.CompletedProcess:
    """`python -m chatvec_fast ARGS...` in a subprocess, text output captured."""
    return subprocess.run([sys.executable, "-m", "chatvec_fast", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, **kwargs)  # fmt: skip


def model_args(paths: dict) -> list[str]:
    """['--base', B, '--chat', C, '--cp', P] for the roles in paths."""
    return [arg for role in ("base", "chat", "cp", "vector") if role in paths for arg in (f"--{role}", paths[role])]


def assert_one_line_error(r: subprocess.CompletedProcess, *needles: str):
    """A failed command: non-zero exit, no traceback, one 'error:' message (a planning error may list its
    problems on the lines below) containing every needle."""
    assert r.returncode != 0, r.stdout + r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, r.stderr
    message = r.stderr[r.stderr.index("error:") :]
    for needle in needles:
        assert needle in message, (needle, r.stderr)


CHAT_TEMPLATE = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"


def write_tokenizer(directory, tokens: list[str], specials: list[str], eos: str, template=None):
    """A WordLevel tokenizer.json (via the tokenizers library) and a tokenizer_config.json, replacing the
    directory's tokenizer (the special_tokens_map.json of the one it replaces would name other tokens)."""
    import json

    if os.path.exists(os.path.join(directory, "special_tokens_map.json")):
        os.unlink(os.path.join(directory, "special_tokens_map.json"))

    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {t: i for i, t in enumerate(tokens)}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.add_special_tokens(specials)
    tk.save(os.path.join(directory, "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": eos, "unk_token": "<unk>"}
    if template:
        config["chat_template"] = template
    json.dump(config, open(os.path.join(directory, "tokenizer_config.json"), "w"))
    json.dump({"bos_token_id": 1, "eos_token_id": 2}, open(os.path.join(directory, "generation_config.json"), "w"))


def load_weights(directory) -> dict:
    """Every tensor of every .safetensors file in directory, by name, read by the safetensors library (not by
    the merge's own reader)."""
    from safetensors.torch import load_file

    found = {}
    for name in sorted(os.listdir(directory)):
        if name.endswith(".safetensors"):
            found.update(load_file(os.path.join(directory, name)))
    return found


def open_every_output(directory):
    """Every .safetensors file under directory opens with the safetensors library, every tensor loads."""
    from safetensors import safe_open

    count = 0
    for root, _, files in os.walk(directory):
        for f in files:
            if f.endswith(".safetensors"):
                with safe_open(os.path.join(root, f), framework="pt") as g:
                    for key in g.keys():
                        g.get_tensor(key)
                count += 1
    return count


@pytest.fixture
def tokenized_triple(triple):
    """base and chat share a 512-token vocabulary; cp extends it to 600 and puts <|im_end|> at a new id."""
    paths = triple(cp_vocab=600)
    shared = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"] + [f"tok{i}" for i in range(5, 512)]
    specials = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    write_tokenizer(paths["base"], shared, specials, "</s>")
    write_tokenizer(paths["chat"], shared, specials, "<|im_end|>", CHAT_TEMPLATE)
    cp_tokens = shared[:4] + ["tok4-cp"] + shared[5:] + [f"ext{i}" for i in range(512, 599)] + ["<|im_end|>"]
    write_tokenizer(paths["cp"], cp_tokens, ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"], "</s>")
    return paths


# The heaviest cells of the default run (seconds on the 2-core VM, one process) go to CI's slow step (pytest -m
# slow), which runs every one of them; each comment says what of it stays in the default run. With them out and
# `pytest -n auto`, the default run stays under 6 minutes on 2 cores.
HEAVY_CELLS = {
    "test_memory_tensors.py::test_stream_has_the_bits_merge_writes[fp8-output-triton]": 34.5,  # [fp8-output-native]
    "test_memory_tensors.py::test_stream_has_the_bits_merge_writes[fp8-inputs-triton]": 8.8,  # [fp8-inputs-native]
    "test_memory_held.py::test_every_alpha_has_the_bits_merge_writes[fp8-inputs-device-triton]": 8.7,  # host cell
    "test_memory_model.py::test_merge_into_equals_from_pretrained_of_the_merge[fp8-inputs-triton]": 6.4,  # native
    "test_tune_command.py::test_a_failure_mid_run_from_the_command_line_is_resumed": 20.2,  # the API's Ctrl-C test
    "test_distributed.py::test_torchrun_merges_fp8_checkpoints_like_one_process": 11.4,  # two ranks, bf16
    "test_distributed.py::test_torchrun_two_ranks_equal_one_process[sweep]": 5.4,  # [merge]
    "test_distributed.py::test_torchrun_script_entry_point": 5.4,  # `python -m torch.distributed.run`
    "test_distributed.py::test_a_failing_rank_fails_the_run_with_no_output": 5.3,  # test_faults' failures
    "test_inspect.py::test_the_command_writes_its_files_and_refuses_a_used_out": 11.1,  # the figures; --out's checks
    "test_memory_readme.py::test_each_example_runs_as_written[1]": 6.6,  # [0]
    "test_memory_readme.py::test_each_example_runs_as_written[2]": 6.0,  # [0]
    "test_memory_tensors.py::test_peak_memory_stays_flat_as_the_model_grows": 7.9,  # none: slow step only
    "test_verify_progress.py::test_verify_all_streams_a_large_tensor": 6.2,  # verify --all on small models
    "test_tune_command.py::test_the_known_answer_from_the_command_line": 11.1,  # test_tune_known_answer (the API)
    "test_vocab_policies.py::test_every_decision_of_the_products_before_any_work": 6.7,  # each policy's own tests
    "test_reliability.py::test_concurrent_run_is_refused": 6.0,  # none: slow step only (a lock against a live run)
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid.split("/")[-1] in HEAVY_CELLS:
            item.add_marker(pytest.mark.slow)
