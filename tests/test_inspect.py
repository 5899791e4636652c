"""chatvec inspect: every figure against a plain numpy computation on synthetic triples, the per-layer sums,
chunking that changes nothing, bad inputs refused as merge refuses them, and the output files."""

from __future__ import annotations

import glob
import json
import math
import os

import numpy as np
import pytest
import torch
from conftest import assert_one_line_error, cli, file_digests, model_args, stable_seed
from safetensors import safe_open
from safetensors.torch import save_file

import chatvec_fast
from chatvec_fast.errors import InputError, OutputError, PlanError
from chatvec_fast.inspection import sums as sums_module
from chatvec_fast.read.chunks import InputFiles
from chatvec_fast.testing.synthetic import make_triple

# Ratios of sums of squares (all terms positive): numpy's np.dot and our block sums differ by rounding only,
# a few ulps over < 1e5 terms. A cosine's dot product cancels (cosines here are ~1e-3), so its error is
# bounded against ||d|| ||e|| instead: n * eps ~ 1e5 * 1.1e-16 ~ 1e-11 of 1.
RATIO_RTOL = 1e-12
COSINE_ATOL = 1e-11


@pytest.fixture(scope="module")
def triple(tmp_path_factory):
    """tiny Llama triple (random bf16, chat and cp = base + noise), cp with 8 extra vocabulary rows, sharded."""
    root = tmp_path_factory.mktemp("inspect")
    return make_triple(str(root / "m"), "tiny", cp_vocab=520, shard_bytes={"base": None, "chat": 90_000,
                                                                           "cp": 60_000}, seed=7)  # fmt: skip


def load(directory: str) -> dict[str, torch.Tensor]:
    """Every tensor of a model directory, as stored (read by the safetensors library, not by our reader)."""
    out = {}
    for path in sorted(glob.glob(os.path.join(directory, "*.safetensors"))):
        with safe_open(path, framework="pt") as f:
            out.update({name: f.get_tensor(name) for name in f.keys()})  # noqa: SIM118
    return out


def numpy_sums(base, chat, cp=None) -> dict[str, float]:
    """The plain computation: float64 numpy arrays; chat and cp cut to base's rows (the rows all share)."""
    b = base.double().numpy().ravel()
    d = chat.double().numpy()[: base.shape[0]].ravel() - b if base.dim() else chat.double().numpy().ravel() - b
    out = {"base.base": float(np.dot(b, b)), "delta.delta": float(np.dot(d, d))}
    if cp is not None:
        e = cp.double().numpy()[: base.shape[0]].ravel() - b
        out.update({"cp_delta.cp_delta": float(np.dot(e, e)), "delta.cp_delta": float(np.dot(d, e))})
    return out


def figures(s: dict[str, float]) -> tuple[float, float | None]:
    rel = math.sqrt(s["delta.delta"]) / math.sqrt(s["base.base"])
    cos = None
    if "delta.cp_delta" in s:
        cos = s["delta.cp_delta"] / (math.sqrt(s["delta.delta"]) * math.sqrt(s["cp_delta.cp_delta"]))
    return rel, cos


def assert_row(row, want: dict[str, float]):
    rel, cos = figures(want)
    assert row.relative == pytest.approx(rel, rel=RATIO_RTOL), row.name
    for key, value in want.items():
        tol = COSINE_ATOL * math.sqrt(want["delta.delta"] * want["cp_delta.cp_delta"]) if key == "delta.cp_delta" else 0
        assert row.sums[key] == pytest.approx(value, rel=RATIO_RTOL, abs=tol), (row.name, key)
    if cos is not None:
        assert row.cosine == pytest.approx(cos, abs=COSINE_ATOL), row.name
        assert row.cp_relative == pytest.approx(math.sqrt(want["cp_delta.cp_delta"] / want["base.base"]),
                                                rel=RATIO_RTOL)  # fmt: skip


def test_every_figure_matches_numpy(triple):
    base, chat, cp = (load(triple[r]) for r in ("base", "chat", "cp"))
    got = chatvec_fast.inspect(triple["base"], triple["chat"], triple["cp"])
    assert sorted(r.name for r in got.tensors) == sorted(base) == sorted(cp)
    want = {name: numpy_sums(base[name], chat[name], cp[name]) for name in base}
    for row in got.tensors:
        assert row.elements == base[row.name].numel()
        assert all(v > 0 for v in row.sums.values() if v is not None) or row.sums["delta.cp_delta"] < 0
        assert_row(row, want[row.name])
    embed = next(r for r in got.tensors if r.name == "model.embed_tokens.weight")
    assert "compared on base's 512 rows (chat 512, cp 520)" in embed.notes
    # per layer: the layer's sums are its tensors' sums, and its figures come from them
    layer1 = next(r for r in got.layers if r.name == "model.layers.1")
    names = [n for n in base if n.startswith("model.layers.1.")]
    summed = {k: sum(want[n][k] for n in names) for k in want[names[0]]}
    assert layer1.tensors == len(names) == 9 and layer1.layer == 1
    assert_row(layer1, summed)
    mean_of_ratios = np.mean([figures(want[n])[0] for n in names])
    assert abs(layer1.relative - mean_of_ratios) > 1e-3 * layer1.relative  # the norms' ratios weigh less
    total = {k: sum(w[k] for w in want.values()) for k in summed}
    assert_row(got.total, total)
    assert [r.name for r in got.layers] == ["model.embed_tokens.weight", "model.layers.0", "model.layers.1",
                                            "lm_head.weight", "model.norm.weight"]  # fmt: skip


def test_without_cp_only_the_relative_size(triple):
    base, chat = load(triple["base"]), load(triple["chat"])
    got = chatvec_fast.inspect(triple["base"], triple["chat"])
    assert not got.with_cp and got.total.cosine is None and got.total.cp_relative is None
    for row in got.tensors:
        assert_row(row, numpy_sums(base[row.name], chat[row.name]))
    assert "cos" not in got.table() and "cosine" not in got.to_dict()["total"]


def test_rows_chat_added_are_left_out_with_and_without_cp(tmp_path):
    """A chat model that added ChatML (514 rows against base's 512): compared on base's rows, and said so;
    `extract` still refuses such a chat model (its vector must hold every row)."""
    paths = make_triple(str(tmp_path / "m"), "tiny", chatml="added", cp_vocab=520)
    base, chat, cp = (load(paths[r]) for r in ("base", "chat", "cp"))
    for with_cp in (True, False):
        got = chatvec_fast.inspect(paths["base"], paths["chat"], paths["cp"] if with_cp else None)
        rows = {r.name: r for r in got.tensors}
        for name in ("model.embed_tokens.weight", "lm_head.weight"):
            assert chat[name].shape[0] == 514 and rows[name].elements == 512 * 64
            assert_row(rows[name], numpy_sums(base[name], chat[name], cp[name] if with_cp else None))
            assert rows[name].notes[0].startswith("compared on base's 512 rows (chat 514")
        assert got.not_compared == [] and any("rows chat added" in n for n in got.notes)
    with pytest.raises(PlanError, match="base has shape"):
        chatvec_fast.extract(paths["base"], paths["chat"], str(tmp_path / "vector"))


def test_fp8_inputs_are_read_with_their_scales(tmp_path):
    """cp's linear weights in FP8 with 32 x 48 block scales (partial blocks): compared as their values."""
    from fp8_data import dequantize

    from chatvec_fast.testing.quantize import layout_quantizer
    from chatvec_fast.testing.synthetic import FP8Layout

    paths = make_triple(str(tmp_path / "m"), "tiny", fp8={"cp": FP8Layout("block", layout_quantizer, (32, 48))})
    base, chat, cp = (load(paths[r]) for r in ("base", "chat", "cp"))
    got = chatvec_fast.inspect(paths["base"], paths["chat"], paths["cp"], chunk_elements=1000)
    q = "model.layers.1.mlp.down_proj.weight"
    assert cp[q].dtype == torch.float8_e4m3fn
    scales = cp[q + "_scale_inv"].numpy().reshape(-1)
    values = dequantize(cp[q].view(torch.uint8).numpy(), scales, "F8_E4M3", ("block", 32, 48))
    row = next(r for r in got.tensors if r.name == q)
    assert_row(row, numpy_sums(base[q], chat[q], torch.from_numpy(values)))
    assert not any(n.endswith("_scale_inv") for n in [r.name for r in got.tensors] + [n for n, _ in got.not_compared])


def test_chunk_size_changes_nothing_and_bounds_every_read(triple, monkeypatch):
    """Blocks of 64 elements (so chunks of 7 split blocks, and whole blocks pass by) give bit-identical sums
    for every chunk size and thread count; no read is larger than one chunk of the widest input."""
    monkeypatch.setattr(sums_module, "BLOCK", 64)
    largest = []
    read = InputFiles.read

    def spy(self, info, first_byte, buf):
        largest.append(len(memoryview(buf).cast("B")))
        return read(self, info, first_byte, buf)

    monkeypatch.setattr(InputFiles, "read", spy)
    results = {}
    for chunk, threads in ((7, 1), (64, 3), (1000, 2), (1 << 20, 1)):
        largest.clear()
        got = chatvec_fast.inspect(triple["base"], triple["chat"], triple["cp"], chunk_elements=chunk, threads=threads)
        assert max(largest) <= chunk * 2, chunk  # bf16 inputs: 2 bytes an element
        results[chunk] = [(r.name, r.sums) for r in (*got.tensors, *got.layers, got.total)]
    assert results[7] == results[64] == results[1000] == results[1 << 20]


def test_bin_inputs_give_the_same_sums(triple, tmp_path):
    """base as .bin shards with an index, chat as one .bin (read by byte range): the same sums, bit for bit."""
    from test_bin_inputs import to_bin

    base = to_bin(triple["base"], str(tmp_path / "base-bin"), sharded=True)
    chat = to_bin(triple["chat"], str(tmp_path / "chat-bin"), sharded=False)
    want = chatvec_fast.inspect(triple["base"], triple["chat"], triple["cp"])
    got = chatvec_fast.inspect(base, chat, triple["cp"])
    assert [(r.name, r.sums) for r in got.tensors] == [(r.name, r.sums) for r in want.tensors]


@pytest.mark.parametrize("chunks", [(65536,), (1, 65535, 65536), (7, 100_000, 1), (131_073,), (250_001,)])
def test_block_sums_do_not_depend_on_the_chunks(chunks):
    """At the real block size (65,536): 250,001 awkward-sized elements fed in chunks that split blocks, end on
    their edges, or hold several, give the same sums bit for bit as one call."""
    rng = np.random.default_rng(stable_seed(chunks))
    values = [rng.standard_normal(250_001) * scale for scale in (0.02, 0.03, 0.025)]
    whole = sums_module.TensorSums(with_cp=True)
    whole.add(*values)
    want = whole.finish()
    got = sums_module.TensorSums(with_cp=True)
    pos, i = 0, 0
    while pos < len(values[0]):
        n = chunks[i % len(chunks)]
        got.add(*(v[pos : pos + n] for v in values))
        pos, i = pos + n, i + 1
    assert got.finish() == want, stable_seed(chunks)
    assert want["base.base"] == pytest.approx(float(np.dot(values[0], values[0])), rel=RATIO_RTOL)


def test_exact_sums_are_exact_and_ieee():
    """ExactSum against math.fsum on values whose float64 running sum loses digits; NaN and Inf as IEEE."""
    values = [1e16, 1.0, -1e16, 3.0, 2.0**-60, 1e300, -1e300] * 7
    total = sums_module.ExactSum()
    for v in values:
        total.add(v)
    assert total.value == math.fsum(values) != sum(values)
    for specials, want in (([math.inf, 1.0], math.inf), ([math.inf, -math.inf], math.nan), ([math.nan], math.nan)):
        s = sums_module.ExactSum()
        for v in specials:
            s.add(v)
        assert s.value == want or (math.isnan(want) and math.isnan(s.value))


def _rewrite(directory: str, change):
    """Rewrites a single-file model's tensors through change(tensors) (config and tokenizer kept)."""
    path = os.path.join(directory, "model.safetensors")
    tensors = load(directory)
    change(tensors)
    save_file(tensors, path, metadata={"format": "pt"})


def test_zero_base_and_nan_are_said_plainly(tmp_path):
    paths = make_triple(str(tmp_path / "m"), "tiny")
    zero_base, zero_both, nan_at = "model.norm.weight", "model.layers.1.input_layernorm.weight", "model.layers.0."

    def base_change(t):
        t[zero_base] = torch.zeros_like(t[zero_base])
        t[zero_both] = torch.zeros_like(t[zero_both])

    def chat_change(t):
        t[zero_both] = torch.zeros_like(t[zero_both])
        t[nan_at + "mlp.up_proj.weight"][3, 5] = float("nan")
        t[nan_at + "mlp.up_proj.weight"][4, 0] = float("inf")

    _rewrite(paths["base"], base_change)
    _rewrite(paths["chat"], chat_change)
    got = chatvec_fast.inspect(paths["base"], paths["chat"], paths["cp"], out=str(tmp_path / "out"))
    rows = {r.name: r for r in got.tensors}
    assert rows[zero_base].relative == math.inf and "||base|| = 0: the relative size is inf" in rows[zero_base].notes
    assert math.isnan(rows[zero_both].relative) and "chat equals base" in rows[zero_both].notes[0]
    up = rows[nan_at + "mlp.up_proj.weight"]
    assert math.isnan(up.relative) and up.non_finite == {"base": 0, "chat": 2, "cp": 0}
    assert "NaN/Inf in the inputs (chat 2 elements)" in up.notes
    layer0 = next(r for r in got.layers if r.name == "model.layers.0")
    assert math.isnan(layer0.relative) and layer0.non_finite["chat"] == 2 and layer0.notes
    doc = json.loads((tmp_path / "out" / "inspect.json").read_text(), parse_constant=pytest.fail)  # strict JSON
    by_name = {r["name"]: r for r in doc["tensors"]}
    assert by_name[zero_base]["relative"] == "inf" and by_name[zero_both]["relative"] == "nan"
    table = (tmp_path / "out" / "inspect.md").read_text()
    assert "||base|| = 0: the relative size is inf" in table and "NaN/Inf in the inputs (chat 2 elements)" in table


def test_tensors_without_figures_are_listed_with_why(tmp_path):
    """A tensor only cp has, an integer tensor in all three, one base and chat have and cp lacks."""
    paths = make_triple(str(tmp_path / "m"), "tiny")
    steps = torch.arange(5, dtype=torch.int64)

    def add(only_cp=False, drop=False):
        def change(t):
            t["model.steps"] = steps
            if only_cp:
                t["model.cp_only.weight"] = torch.ones(3, 4, dtype=torch.bfloat16)
            if drop:
                del t["model.layers.1.post_attention_layernorm.weight"]

        return change

    _rewrite(paths["base"], add())
    _rewrite(paths["chat"], add())
    _rewrite(paths["cp"], add(only_cp=True, drop=True))
    got = chatvec_fast.inspect(paths["base"], paths["chat"], paths["cp"])
    dropped = "model.layers.1.post_attention_layernorm.weight"
    want = [("model.cp_only.weight", "only in cp"), (dropped, "in base and chat, not in cp")]
    assert sorted(got.not_compared) == [*want, ("model.steps", "not a float dtype")]
    assert len(got.tensors) == 20 and "not compared: " in got.table()
    assert "## Not compared" in got.markdown() and "`model.cp_only.weight`: only in cp" in got.markdown()


def test_bad_inputs_get_the_planners_errors(triple, tmp_path):
    with pytest.raises(InputError) as missing:
        chatvec_fast.inspect(str(tmp_path / "nowhere"), triple["chat"], triple["cp"])
    with pytest.raises(InputError) as merge_missing:
        chatvec_fast.merge(str(tmp_path / "nowhere"), triple["chat"], triple["cp"], str(tmp_path / "o"), dry_run=True)
    assert str(missing.value) == str(merge_missing.value) and "nowhere" in str(missing.value)

    paths = make_triple(str(tmp_path / "m"), "tiny")
    name = "model.layers.0.mlp.gate_proj.weight"

    def cut(t):
        t[name] = t[name][:100].clone()

    _rewrite(paths["chat"], cut)
    with pytest.raises(PlanError) as shape:
        chatvec_fast.inspect(paths["base"], paths["chat"], paths["cp"], out=str(tmp_path / "out"))
    with pytest.raises(PlanError) as merge_shape:
        chatvec_fast.merge(paths["base"], paths["chat"], paths["cp"], str(tmp_path / "o"), dry_run=True)
    assert str(shape.value) == str(merge_shape.value) and name in str(shape.value) and "(100, 64)" in str(shape.value)
    assert not (tmp_path / "out").exists()
    with pytest.raises(PlanError, match=name):
        chatvec_fast.inspect(paths["base"], paths["chat"])
    with pytest.raises(TypeError, match="alpha_for"):
        chatvec_fast.inspect(paths["base"], paths["chat"], alpha_for=["x=0"])


def test_the_command_writes_its_files_and_refuses_a_used_out(triple, tmp_path):
    before = file_digests(*triple.values())
    out = tmp_path / "report"
    r = cli("inspect", *model_args(triple), "--out", out, "--quiet")
    assert r.returncode == 0, r.stderr
    assert "model.layers.1" in r.stdout and "cosine" in r.stdout and "all" in r.stdout
    assert sorted(os.listdir(out)) == ["inspect.json", "inspect.md", "inspect.png"]
    doc = json.loads((out / "inspect.json").read_text())
    assert doc["tool"] == "chatvec-fast" and len(doc["tensors"]) == 21 and doc["total"]["cosine"] != 0
    assert doc["not_compared"] == [] and set(doc["inputs"]) == {"base", "chat", "cp"}
    table = (out / "inspect.md").read_text()
    assert "| `model.layers.0` | 9 |" in table and "## By tensor" in table
    assert (out / "inspect.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    written = file_digests(out)

    r = cli("inspect", *model_args(triple), "--out", out, "--quiet")  # again: --out is not empty
    assert_one_line_error(r, f"--out {out} is not empty", "never replaces files")
    assert file_digests(out) == written
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    r = cli("inspect", "--base", triple["base"], "--chat", triple["chat"], "--out", theirs, "--quiet")
    assert_one_line_error(r, "is not empty")
    assert os.listdir(theirs) == ["notes.txt"] and (theirs / "notes.txt").read_text() == "mine"
    r = cli("inspect", "--base", triple["base"], "--chat", triple["chat"], "--out", os.path.join(triple["chat"], "x"))
    assert_one_line_error(r, "inside (or is) the")  # merge's rule: never write into an input
    assert file_digests(*triple.values()) == before


def test_a_failed_write_leaves_nothing(triple, tmp_path, monkeypatch):
    for point in ("report", "commit"):
        monkeypatch.setenv("CHATVEC_FAULT", f"{point}:ENOSPC")
        out = tmp_path / point
        with pytest.raises(OutputError, match="disk is full"):
            chatvec_fast.inspect(triple["base"], triple["chat"], triple["cp"], out=str(out))
        assert os.listdir(tmp_path) == [] or not any(n.startswith((point, f".{point}")) for n in os.listdir(tmp_path))


def test_a_missing_matplotlib_is_named_before_work(triple, tmp_path, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else
                        find_spec(name, *a))  # fmt: skip
    monkeypatch.setattr(InputFiles, "read", lambda *a: pytest.fail("read before the check"))
    with pytest.raises(ImportError, match=r"pip install 'chatvec-fast\[tune\]'"):
        chatvec_fast.inspect(triple["base"], triple["chat"], triple["cp"], out=str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_star_import_keeps_the_standard_librarys_inspect():
    """`from chatvec_fast import *` must not shadow the standard library's `inspect` in the importing module."""
    import chatvec_fast

    namespace: dict = {}
    exec("import inspect\nfrom chatvec_fast import *", namespace)
    assert namespace["inspect"].__name__ == "inspect"
    assert chatvec_fast.inspect is chatvec_fast.inspect_vector
