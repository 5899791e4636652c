"""apply with several saved vectors: cp + a1*v1 + ... + aM*vM, summed in float64 and rounded once, each
input read once, in every backend; sweeps over the grid of per-vector alphas; the refusals."""

from __future__ import annotations

import glob
import json
import os
import shlex
from dataclasses import replace

import pytest
import torch
from conftest import WITH_TORCH, assert_bits_equal, assert_one_line_error, cli, file_digests
from safetensors.torch import load_file

from chatvec_fast import apply, extract
from chatvec_fast.alphas import vector_alphas
from chatvec_fast.backends.reference import round_float64


def load_dir(path) -> dict[str, torch.Tensor]:
    return {k: v for f in sorted(glob.glob(os.path.join(path, "*.safetensors"))) for k, v in load_file(f).items()}


@pytest.fixture(scope="module")
def vectors(tmp_path_factory):
    """Three vectors from three chat models (f64, f32 and bf16 storage) and a cp with a larger vocabulary."""
    from chatvec_fast.testing.synthetic import make_triple

    root = tmp_path_factory.mktemp("vectors")
    cp = None
    found = []
    for m, dtype in enumerate(("f64", "f32", "bf16")):
        paths = make_triple(str(root / f"models{m}"), "tiny", seed=m, cp_vocab=600 if m == 0 else None)
        cp = cp or paths["cp"]
        extract(paths["base"], paths["chat"], str(root / f"vec{m}"), dtype=dtype)
        found.append(str(root / f"vec{m}"))
    return found, cp


def expected(vector_dirs, cp, alphas) -> dict[str, torch.Tensor]:
    """cp + a1*v1 + a2*v2 ... per tensor, in float64 in that order (the products, then the sums left to right),
    rounded once to cp's dtype; cp's rows beyond the vectors' (its larger vocabulary) are cp's own."""
    want = {}
    vs = [load_dir(v) for v in vector_dirs]
    for name, c in load_dir(cp).items():
        acc = c.double().clone()
        rows = vs[0][name].shape[0] if name in vs[0] else 0
        for alpha, v in zip(alphas, vs):
            if name in v:
                acc[:rows] = acc[:rows] + torch.tensor(alpha, dtype=torch.float64) * v[name].double()
        want[name] = round_float64(acc, c.dtype) if c.is_floating_point() else c
    return want


@pytest.mark.parametrize("backend", WITH_TORCH)
def test_two_vectors_give_the_float64_sum_rounded_once(vectors, tmp_path, backend):
    (v0, v1, _), cp = vectors
    out = tmp_path / "out"
    r = apply([v0, v1], cp, str(out), alpha=[0.5, 0.3], backend=backend, chunk_elements=4096)
    want = expected([v0, v1], cp, [0.5, 0.3])
    got = load_dir(out)
    assert got.keys() == want.keys()
    for name in want:
        assert_bits_equal(got[name], want[name], name)
    assert r.tensors == len(want) and any("2 vectors" in n for n in r.notes)
    report = json.load(open(out / "chatvec_report.json"))
    assert report["alpha"] == [0.5, 0.3] and set(report["inputs"]) == {"vector", "vector2", "cp"}
    assert cli("verify", out, "--all").returncode == 0


def test_each_input_is_read_once(vectors, tmp_path):
    """The bytes the process reads (rchar: every read and preadv) stay below one pass over the inputs' files;
    reading any input twice would pass it."""
    (v0, v1, v2), cp = vectors
    once = sum(os.path.getsize(f) for d in (v0, v1, v2, cp) for f in glob.glob(os.path.join(d, "*.safetensors")))
    script = (
        "import sys; from chatvec_fast import apply\n"
        "def rchar(): return int(next(l for l in open('/proc/self/io') if l.startswith('rchar')).split()[1])\n"
        "apply(sys.argv[1:4], sys.argv[4], sys.argv[5], alpha=[0.5, 0.25, 1.0]); before = rchar()\n"
        "apply(sys.argv[1:4], sys.argv[4], sys.argv[6], alpha=[0.5, 0.25, 1.0], backend='native')\n"
        "print(rchar() - before)\n"
    )  # the first apply imports everything; the second's reads are the merge's own
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", script, v0, v1, v2, cp, str(tmp_path / "a"), str(tmp_path / "b")],
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    read = int(r.stdout.split()[-1])
    assert once <= read < 1.25 * once, (read, once)  # headers, configs and tokenizers are the rest


def test_a_sweep_over_two_vectors_is_the_grid_and_each_output_equals_its_own_apply(vectors, tmp_path):
    (v0, _, v2), cp = vectors
    r = cli("apply", "--vector", v0, "--vector", v2, "--cp", cp, "--out", tmp_path / "grid",
            "--alphas", "0.5,1", "--alphas", "0.25", "--quiet")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(tmp_path / "grid")) == ["alpha-0.5_0.25", "alpha-1.0_0.25"]
    for a in ((0.5, 0.25), (1.0, 0.25)):
        one = tmp_path / f"one-{a[0]}"
        r = cli("apply", "--vector", v0, "--vector", v2, "--cp", cp, "--out", one,
                "--alpha", str(a[0]), "--alpha", str(a[1]), "--quiet")  # fmt: skip
        assert r.returncode == 0, r.stderr
        swept = tmp_path / "grid" / f"alpha-{a[0]}_{a[1]}"
        got, want = load_dir(swept), expected([v0, v2], cp, a)
        for name in want:
            assert_bits_equal(got[name], want[name], name)
            assert_bits_equal(load_dir(one)[name], want[name], name)
    assert cli("verify", tmp_path / "grid", "--all").returncode == 0


def test_the_model_card_command_reproduces_the_output(vectors, tmp_path):
    (v0, v1, _), cp = vectors
    out = tmp_path / "out"
    assert cli("apply", "--vector", v0, "--vector", v1, "--cp", cp, "--out", out, "--alpha", "0.5",
               "--alpha", "0.3", "--quiet").returncode == 0  # fmt: skip
    card = open(out / "README.md").read()
    # local inputs are named in the body (the front matter's base_model holds Hub ids only)
    assert f"`{v0}`" in card and f"`{v1}`" in card and "alpha1 * vector1 + alpha2 * vector2" in card
    command = card.split("```bash\n")[1].split("\n```")[0]
    args = [str(tmp_path / "again") if a == "OUT" else a for a in shlex.split(command)[1:]]
    assert cli(*args, "--quiet").returncode == 0
    assert file_digests(out) == {k.replace("again", "out"): v for k, v in file_digests(tmp_path / "again").items()}


def test_vectors_that_disagree_are_refused_naming_the_tensors(vectors, tmp_path):
    from chatvec_fast.testing.synthetic import SHAPES, make_triple

    (v0, _, _), cp = vectors
    other = make_triple(str(tmp_path / "small"), replace(SHAPES["tiny"], layers=1), seed=5)
    assert extract(other["base"], other["chat"], str(tmp_path / "v-small")).tensors
    r = cli("apply", "--vector", v0, "--vector", tmp_path / "v-small", "--cp", cp, "--out", tmp_path / "o")
    assert_one_line_error(r, "differ in which tensors", "layers.1", "one at a time")
    assert not os.path.exists(tmp_path / "o")


@pytest.mark.parametrize(
    "extra, needles",
    [
        (["--alpha", "0.5"], ["2 vectors need 2 alphas"]),
        (["--alpha", "0.5", "--alpha", "0.5", "--alpha", "1"], ["2 vectors need 2 alphas"]),
        (["--alphas", "0.5,1"], ["2 vectors need 2 alpha lists"]),
        (["--alpha", "0.5", "--alpha", "0.2", "--alpha-for", "norm=0"], ["--alpha-for", "one at a time"]),
        (["--alpha", "0.5", "--alpha", "nan"], ["finite"]),
    ],
)
def test_alphas_that_do_not_fit_the_vectors_are_refused(vectors, tmp_path, extra, needles):
    (v0, v1, _), cp = vectors
    r = cli("apply", "--vector", v0, "--vector", v1, "--cp", cp, "--out", tmp_path / "o", *extra)
    assert_one_line_error(r, *needles)
    assert not os.path.exists(tmp_path / "o")


def test_a_model_directory_given_as_a_second_vector_is_refused(vectors, tmp_path):
    (v0, _, _), cp = vectors
    r = cli("apply", "--vector", v0, "--vector", cp, "--cp", cp, "--out", tmp_path / "o", "--alpha", "1",
            "--alpha", "1")  # fmt: skip
    assert_one_line_error(r, "not written by `chatvec extract`", cp)


def test_one_vector_keeps_its_forms_and_more_than_the_kernels_take_is_refused(vectors, tmp_path):
    assert vector_alphas(1) == ([1.0], False) and vector_alphas(1, 0.5) == ([0.5], False)
    assert vector_alphas(1, alphas="0.5,1") == ([0.5, 1.0], True)
    assert vector_alphas(2) == ([(1.0, 1.0)], False)
    assert vector_alphas(2, alphas=["0.5,1", [0, 2]]) == ([(0.5, 0.0), (0.5, 2.0), (1.0, 0.0), (1.0, 2.0)], True)
    with pytest.raises(ValueError, match="1 to 16 vectors"):
        vector_alphas(17)
    with pytest.raises(ValueError, match="one alpha list"):
        vector_alphas(1, alphas=["0.5", "1"])
    (v0, v1, v2), cp = vectors
    many = [v0, v1, v2, v0, v1]  # the triton kernel takes 4 vectors a call
    with pytest.raises(ValueError, match="at most 4 vectors"):
        apply(many, cp, str(tmp_path / "o"), alpha=[0.1] * 5, backend="triton")
    assert not os.path.exists(tmp_path / "o")
