"""FP8 checkpoints end to end: block-scaled and per-row FP8 weights (any role), merged exactly to bf16 or
re-quantized to FP8, in every command, checked against an independent float64 computation."""

from __future__ import annotations

import itertools
import json
import os

import numpy as np
import pytest
import torch
from conftest import assert_one_line_error, cli, model_args
from fp8_data import dequantize, quantize
from safetensors import safe_open

import chatvec_fast
from chatvec_fast.backends.reference import round_float64

ALPHA = 0.7
# Odd shapes: rows and columns that are not multiples of the blocks.
SHAPES = {"a.weight": (200, 300), "b.weight": (37, 19), "norm.weight": (300,)}
LAYOUTS = {"block": ("block", 16, 32), "row": ("row",)}


def weights(seed: int, base=None, noise=0.002) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    if base is None:
        return {n: rng.standard_normal(s) * (0.05 if len(s) == 1 else 0.02) + (1.0 if len(s) == 1 else 0.0)
                for n, s in SHAPES.items()}  # fmt: skip
    return {n: v + rng.standard_normal(v.shape) * noise for n, v in base.items()}


def bf16_bits(x: np.ndarray) -> np.ndarray:
    return round_float64(torch.from_numpy(x.astype(np.float64)), torch.bfloat16).view(torch.int16).numpy()


def write_model(directory, values: dict, fp8: str | None, split_scales=False, special=None):
    """A model directory: 2-D weights FP8 (codes and F32 scales, quantized by the independent quantizer) in
    `fp8`'s layout, or bf16; with split_scales the scales sit in another shard (as DeepSeek-V3's may)."""
    os.makedirs(directory)
    tensors, scales = {}, {}
    for name, v in values.items():
        if fp8 and v.ndim == 2:
            w = v.copy()
            if special is not None:
                special(name, w)
            codes, s = quantize(w, "F8_E4M3", LAYOUTS[fp8])
            tensors[name] = codes.view(np.uint8)
            suffix = "_scale_inv" if fp8 == "block" else "_scale"
            block_rows = -(-w.shape[0] // LAYOUTS["block"][1])
            scales[name + suffix] = s.reshape(-1, 1) if fp8 == "row" else s.reshape(block_rows, -1)
        else:
            tensors[name] = bf16_bits(v)
    dtypes = {n: ("F8_E4M3" if n in values and fp8 and values[n].ndim == 2 else "BF16") for n in tensors}
    files = {"model-00001-of-00002.safetensors": tensors, "model-00002-of-00002.safetensors": scales}
    if not split_scales:
        files = {"model-00001-of-00002.safetensors": {**tensors, **scales}, "model-00002-of-00002.safetensors": {}}
        files["model-00002-of-00002.safetensors"]["norm.weight"] = files["model-00001-of-00002.safetensors"].pop(
            "norm.weight")  # fmt: skip
    weight_map = {}
    for fname, group in files.items():
        _save(os.path.join(directory, fname), group, dtypes)
        weight_map.update({n: fname for n in group})
    index = os.path.join(directory, "model.safetensors.index.json")
    json.dump({"metadata": {}, "weight_map": weight_map}, open(index, "w"))
    config = {"model_type": "llama", "vocab_size": 10}
    if fp8 == "block":
        config["quantization_config"] = {"quant_method": "fp8", "weight_block_size": [16, 32]}
    elif fp8 == "row":
        config["quantization_config"] = {"quant_method": "compressed-tensors"}
    json.dump(config, open(os.path.join(directory, "config.json"), "w"))
    return str(directory)


def _save(path, group, dtypes):
    """safetensors with F8_E4M3 and BF16 dtypes written from raw numpy bits (numpy has neither)."""
    from chatvec_fast.write.shard import ShardFile, build_header

    entries = [(n, dtypes.get(n, "F32"), a.shape, a.nbytes) for n, a in group.items()]
    header, offsets = build_header(entries, {"format": "pt"})
    f = ShardFile(path, header, len(header) + sum(e[3] for e in entries))
    for a, off in zip(group.values(), offsets):
        f.write(np.ascontiguousarray(a).view(np.uint8), off)
    f.close()


def load_values(directory) -> dict[str, np.ndarray]:
    """float64 values of a model's weights: FP8 dequantized independently (torch's exact float8 widening
    times the scale of each element's group), bf16 widened."""
    raw = {}
    for f in sorted(os.listdir(directory)):
        if f.endswith(".safetensors"):
            with safe_open(os.path.join(directory, f), "pt") as g:
                raw.update({k: g.get_tensor(k) for k in g.keys()})
    out = {}
    for name, t in raw.items():
        if name.endswith(("_scale", "_scale_inv")):
            continue
        if t.dtype == torch.float8_e4m3fn:
            scale = raw.get(name + "_scale_inv")
            layout = LAYOUTS["block"] if scale is not None else LAYOUTS["row"]
            scale = scale if scale is not None else raw[name + "_scale"]
            out[name] = dequantize(t.view(torch.uint8).numpy(), scale.numpy().reshape(-1), "F8_E4M3", layout)
        else:
            out[name] = t.double().numpy()
    return out


@pytest.fixture
def roles(tmp_path):
    base = weights(0)
    return {"base": base, "chat": weights(1, base), "cp": weights(2, base)}


KINDS = list(itertools.product((None, "block"), repeat=3)) + [("row", "row", "row"), ("block", "row", None)]


@pytest.mark.parametrize("kinds", KINDS, ids=lambda k: "-".join(x or "bf16" for x in k))
def test_every_mix_of_fp8_and_bf16_roles_merges_exactly(roles, tmp_path, kinds):
    paths = {r: write_model(tmp_path / r, roles[r], k, split_scales=(k == "block" and r == "chat"))
             for r, k in zip(("base", "chat", "cp"), kinds)}  # fmt: skip
    out = tmp_path / "out"
    r = cli("merge", *model_args(paths), "--out", out, "--alpha", str(ALPHA), "--quiet")
    assert r.returncode == 0, r.stderr
    b, c, p = (load_values(paths[x]) for x in ("base", "chat", "cp"))
    got = {}
    for f in os.listdir(out):
        if f.endswith(".safetensors"):
            with safe_open(str(out / f), "pt") as g:
                got.update({k: g.get_tensor(k) for k in g.keys()})
    assert set(got) == set(SHAPES)  # the scales are folded in: none in the output
    for name in SHAPES:
        want = round_float64(torch.from_numpy(p[name] + ALPHA * (c[name] - b[name])), torch.bfloat16)
        assert got[name].dtype == torch.bfloat16, name
        assert torch.equal(got[name].view(torch.int16), want.view(torch.int16)), name
    assert "quantization_config" not in json.load(open(out / "config.json"))
    assert cli("verify", out, "--all").returncode == 0


def test_nan_and_saturation_pass_through_exactly(roles, tmp_path):
    def hostile(name, w):
        w.reshape(-1)[:6] = [np.nan, 1e6, -1e6, 0.0, -0.0, 1e-12]  # NaN, beyond 448 x scale, zeros, tiny

    paths = {r: write_model(tmp_path / r, roles[r], "block", special=hostile) for r in ("base", "chat", "cp")}
    r = cli("merge", *model_args(paths), "--out", tmp_path / "o", "--quiet")
    assert r.returncode == 0, r.stderr
    assert cli("verify", tmp_path / "o", "--all").returncode == 0
    r = cli("merge", *model_args(paths), "--out", tmp_path / "o8", "--dtype", "fp8", "--quiet")
    assert r.returncode == 0, r.stderr
    assert cli("verify", tmp_path / "o8", "--all").returncode == 0


@pytest.mark.parametrize("layout", ["block", "row"])
def test_fp8_output_requantizes_in_cps_layout(roles, tmp_path, layout):
    paths = {r: write_model(tmp_path / r, roles[r], layout) for r in ("base", "chat", "cp")}
    dry = cli("merge", *model_args(paths), "--out", tmp_path / "o", "--dtype", "fp8", "--dry-run")
    assert "FP8 weights" in dry.stdout and "F8_E4M3" in dry.stdout, dry.stdout
    r = cli("merge", *model_args(paths), "--out", tmp_path / "o", "--dtype", "fp8", "--alpha", str(ALPHA), "--quiet")
    assert r.returncode == 0, r.stderr
    b, c, p = (load_values(paths[x]) for x in ("base", "chat", "cp"))
    suffix = "_scale_inv" if layout == "block" else "_scale"
    with safe_open(str(tmp_path / "o" / "model-00001-of-00002.safetensors"), "pt") as g:
        for name in ("a.weight", "b.weight"):
            exact = p[name] + ALPHA * (c[name] - b[name])
            codes, scales = quantize(exact, "F8_E4M3", LAYOUTS[layout])  # the independent quantizer
            assert np.array_equal(g.get_tensor(name).view(torch.uint8).numpy(), codes), name
            assert np.array_equal(g.get_tensor(name + suffix).numpy().reshape(-1), scales.reshape(-1)), name
    config = json.load(open(tmp_path / "o" / "config.json"))
    assert config["quantization_config"]["quant_method"] in ("fp8", "compressed-tensors")
    assert cli("verify", tmp_path / "o", "--all").returncode == 0
    report = json.load(open(tmp_path / "o" / "chatvec_report.json"))
    assert report["fp8"]["cp"]["weights"] == 2 and "F8_E4M3" in report["fp8"]["output"]


def test_fp8_output_needs_an_fp8_cp(roles, tmp_path):
    paths = {r: write_model(tmp_path / r, roles[r], None if r == "cp" else "block") for r in ("base", "chat", "cp")}
    assert_one_line_error(cli("merge", *model_args(paths), "--out", tmp_path / "o", "--dtype", "fp8"), "no FP8")
    with pytest.raises(ValueError, match="vector is stored in f32, f64, bf16 or f16"):
        chatvec_fast.extract(paths["base"], paths["chat"], str(tmp_path / "v"), dtype="fp8")
    assert not os.path.exists(tmp_path / "v")


def test_sweep_extract_apply_resume_with_fp8(roles, tmp_path):
    paths = {r: write_model(tmp_path / r, roles[r], "block") for r in ("base", "chat", "cp")}
    r = cli("sweep", *model_args(paths), "--out", tmp_path / "s", "--alphas", "0.5,1", "--quiet")
    assert r.returncode == 0, r.stderr
    r = cli("merge", *model_args(paths), "--out", tmp_path / "m", "--alpha", "0.5", "--quiet")
    assert r.returncode == 0, r.stderr
    r = cli("extract", "--base", paths["base"], "--chat", paths["chat"], "--out", tmp_path / "v", "--dtype", "f64")
    assert r.returncode == 0 and "0 elements" not in r.stderr, r.stderr
    r = cli("apply", "--vector", tmp_path / "v", "--cp", paths["cp"], "--out", tmp_path / "a", "--alpha", "0.5")
    assert r.returncode == 0, r.stderr
    for d in ("s", "v", "a"):
        assert cli("verify", tmp_path / d, "--all").returncode == 0, d
    with (
        safe_open(str(tmp_path / "a" / "model-00001-of-00002.safetensors"), "pt") as g1,
        safe_open(str(tmp_path / "s" / "alpha-0.5" / "model-00001-of-00002.safetensors"), "pt") as g2,
    ):  # extract (f64) -> apply == merge, bit for bit
        for k in g1.keys():
            assert torch.equal(g1.get_tensor(k).view(torch.int16), g2.get_tensor(k).view(torch.int16)), k
    env = {"CHATVEC_FAULT": "write#2", "CHATVEC_CHUNK_ELEMENTS": "1000"}
    assert cli("merge", *model_args(paths), "--out", tmp_path / "r", "--dtype", "fp8", "--resume", env=env).returncode
    r = cli("merge", *model_args(paths), "--out", tmp_path / "r", "--dtype", "fp8", "--resume", "--quiet",
            env={"CHATVEC_CHUNK_ELEMENTS": "1000"})  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert cli("verify", tmp_path / "r", "--all").returncode == 0


def test_an_fp8_weight_whose_scale_does_not_fit_is_refused(roles, tmp_path):
    paths = {r: write_model(tmp_path / r, roles[r], "block") for r in ("base", "chat", "cp")}
    config = os.path.join(paths["cp"], "config.json")
    doc = json.load(open(config))
    doc["quantization_config"]["weight_block_size"] = [128, 128]  # the scales were made for 16 x 32 blocks
    json.dump(doc, open(config, "w"))
    r = cli("merge", *model_args(paths), "--out", tmp_path / "o")
    assert_one_line_error(r, "a.weight_scale_inv", "128x128", "weight_block_size")


def test_weights_inside_one_block_keep_the_block_layout(tmp_path):
    """A weight smaller than a block has a [1, 1] scale_inv: still block scales (not per-tensor), so --dtype fp8
    re-quantizes it in cp's block layout."""
    from chatvec_fast.testing.quantize import layout_quantizer
    from chatvec_fast.testing.synthetic import FP8Layout, make_triple

    block = FP8Layout("block", layout_quantizer, (128, 128))  # tiny's 64 x 64 and 64 x 176 weights: 1 or 2 blocks
    paths = make_triple(str(tmp_path / "m"), "tiny", fp8=dict.fromkeys(("base", "chat", "cp"), block))
    r = cli("merge", *model_args(paths), "--out", tmp_path / "o", "--dtype", "fp8", "--quiet")
    assert r.returncode == 0, r.stderr
    assert cli("verify", tmp_path / "o", "--all").returncode == 0
    report = json.load(open(tmp_path / "o" / "chatvec_report.json"))
    assert report["fp8"]["cp"]["scales"] == ["128x128 blocks"], report["fp8"]
