"""mergekit configs -> chatvec merge arguments (chatvec_fast/cli/mergekit_config.py).

Accepted: the configs that compute cp + alpha * (chat - base), as mergekit's docs and our benchmarks write them.
Refused: everything else, each with an error naming the file and the key. End to end: the translated merge is
bit-identical to the float64 reference with mergekit's own per-tensor weights, and (with mergekit installed) within
mergekit's rounding error of mergekit's output for the same config.
"""

from __future__ import annotations

import os
import subprocess
import textwrap

import pytest
import torch
import yaml
from conftest import assert_bits_equal, load_weights, oracle_outputs, tensor_call, ulp_distance

import chatvec_fast
from chatvec_fast.alphas import parse_alpha_for
from chatvec_fast.cli.mergekit_config import ConfigError, read_mergekit_config
from chatvec_fast.errors import ChatvecError

MERGEKIT_YAML = os.environ.get("MERGEKIT_YAML", "/tmp/bench/venv/bin/mergekit-yaml")
BENCH = "/tmp/bench/models"


def config_file(tmp_path, text_or_dict, name="merge.yml") -> str:
    path = tmp_path / name
    text = text_or_dict if isinstance(text_or_dict, str) else yaml.safe_dump(text_or_dict, sort_keys=False)
    path.write_text(textwrap.dedent(text))
    return str(path)


# -- accepted --------------------------------------------------------------------------------------------------------

# bench-anchor/results/configs/mk_a0.5.yml (mk_a0.25 and mk_a0.75 differ only in chat's weight)
BENCH_A05 = f"""\
merge_method: task_arithmetic
base_model: {BENCH}/base
models:
  - model: {BENCH}/chat
    parameters:
      weight: 0.5
  - model: {BENCH}/cp
    parameters:
      weight: 1.0
parameters:
  normalize: false
  lambda: 1.0
dtype: bfloat16
"""
ACCEPTED = {  # name: (config, (base, chat, cp, alpha, alpha_for, dtype))
    "bench_a0.5": (BENCH_A05, ("base", "chat", "cp", 0.5, (), "bf16")),
    "bench_a0.25": (BENCH_A05.replace("0.5", "0.25"), ("base", "chat", "cp", 0.25, (), "bf16")),
    "bench_a0.75": (BENCH_A05.replace("0.5", "0.75"), ("base", "chat", "cp", 0.75, (), "bf16")),
    # mk_a0.5_fp32.yml: float32 arithmetic, bfloat16 output
    "bench_a0.5_fp32": (BENCH_A05.replace("dtype: bfloat16", "dtype: float32\nout_dtype: bfloat16"),
                        ("base", "chat", "cp", 0.5, (), "bf16")),
    # mk_ext_notok.yml and mk_ext_tokcp.yml: cp with an expanded vocabulary, no tokenizer setting or cp's
    "bench_ext_notok": (BENCH_A05.replace("/cp\n", "/cp_ext\n"), ("base", "chat", "cp_ext", 0.5, (), "bf16")),
    "bench_ext_tokcp": (BENCH_A05.replace("/cp\n", "/cp_ext\n") + f"tokenizer:\n  source: {BENCH}/cp_ext\n",
                        ("base", "chat", "cp_ext", 0.5, (), "bf16")),
    # mergekit's README style: the base model listed among the models without parameters, flow mappings
    "readme_base_listed": ("""\
        models:
          - model: base
          - model: chat
            parameters: {weight: 0.3}
          - model: cp
            parameters: {weight: 1}
        merge_method: task_arithmetic
        base_model: base
        dtype: float16
        """, ("base", "chat", "cp", 0.3, (), "f16")),
    "cp_listed_first": ("""\
        merge_method: task_arithmetic
        base_model: base
        models:
          - {model: cp, parameters: {weight: 1.0}}
          - {model: chat, parameters: {weight: -0.5}}
        """, ("base", "chat", "cp", -0.5, (), None)),
    "filtered_weights": ("""\
        merge_method: task_arithmetic
        base_model: base
        models:
          - model: chat
            parameters:
              weight:
                - filter: embed_tokens
                  value: 0
                - filter: layers.1.
                  value: 0.25
                - filter: "q_proj|k_proj"
                  value: 2
                - value: 0.5
          - model: cp
            parameters:
              weight: [{filter: lm_head, value: 1.0}, {value: 1}]
        parameters: {normalize: false, lambda: 1, rescale: false, int8_mask: false, density: 1}
        dtype: torch.float32
        """, ("base", "chat", "cp", 0.5, ("embed_tokens=0.0", r"layers\.1\.=0.25", r"q_proj\|k_proj=2.0"), "f32")),
    # '*' matches every tensor; so does '' (a substring of every name); entries after it are never reached
    "filter_star": ("""\
        merge_method: task_arithmetic
        base_model: base
        models:
          - {model: chat, parameters: {weight: [{filter: mlp, value: 0.1}, {filter: '*', value: 0.6}, {value: 9}]}}
          - {model: cp, parameters: {weight: [{filter: '', value: 1}]}}
        """, ("base", "chat", "cp", 0.6, ("mlp=0.1",), None)),
    # a model's filters fall through to the top-level weight (mergekit's precedence); '1e-3' is YAML text
    "top_level_weight": ("""\
        merge_method: task_arithmetic
        base_model: base
        models:
          - {model: chat, parameters: {weight: {filter: self_attn, value: 1e-3}}}
          - {model: cp}
        parameters: {weight: 1}
        """, ("base", "chat", "cp", 1.0, ("self_attn=0.001",), None)),
    # both weights 1: cp is the model the tokenizer comes from
    "alpha1_tokenizer_names_cp": ("""\
        merge_method: task_arithmetic
        base_model: base
        models:
          - {model: cp, parameters: {weight: 1}}
          - {model: chat, parameters: {weight: 1}}
        tokenizer_source: cp
        """, ("base", "chat", "cp", 1.0, (), None)),
    "linear": ("""\
        merge_method: linear
        models:
          - {model: chat, parameters: {weight: 0.5}}
          - {model: base, parameters: {weight: -0.5}}
          - {model: cp, parameters: {weight: 1.0}}
        parameters: {normalize: false}
        dtype: bfloat16
        """, ("base", "chat", "cp", 0.5, (), "bf16")),
    # a negative alpha: base_model says which of the two is base
    "linear_negative_alpha": ("""\
        merge_method: linear
        base_model: base
        models:
          - {model: cp, parameters: {weight: 1}}
          - {model: base, parameters: {weight: 0.25}}
          - {model: chat, parameters: {weight: -0.25}}
        parameters: {normalize: false}
        """, ("base", "chat", "cp", -0.25, (), None)),
    "linear_filtered": ("""\
        merge_method: linear
        models:
          - {model: cp, parameters: {weight: 1}}
          - {model: chat, parameters: {weight: [{filter: embed_tokens, value: 0}, {value: 0.5}]}}
          - {model: base, parameters: {weight: [{filter: embed_tokens, value: 0}, {value: -0.5}]}}
        parameters: {normalize: false}
        out_dtype: float32
        """, ("base", "chat", "cp", 0.5, ("embed_tokens=0.0",), "f32")),
}  # fmt: skip


@pytest.mark.parametrize("name", ACCEPTED)
def test_accepted(tmp_path, name):
    text, (base, chat, cp, alpha, alpha_for, dtype) = ACCEPTED[name]
    if name.startswith("bench"):
        base, chat, cp = (f"{BENCH}/{m}" for m in (base, chat, cp))
    path = config_file(tmp_path, text)
    m = read_mergekit_config(path)
    assert (m.base, m.chat, m.cp, m.alpha, m.alpha_for, m.dtype) == (base, chat, cp, alpha, alpha_for, dtype)
    assert m.source == path and m.notes and all(isinstance(n, str) for n in m.notes)
    assert m.merge_options() == {"alpha": alpha, "alpha_for": alpha_for, "dtype": dtype}
    parse_alpha_for(m.alpha_for)  # chatvec reads the rules back


def test_alpha_for_rules_mean_mergekit_filters():
    """mergekit's filter is a plain substring test (`filter in name`); the escaped regex under re.search says the
    same of every name, including names that an unescaped regex would also match."""
    import re

    names = ["model.layers.1.mlp.up_proj.weight", "model.layers.11.mlp.up_proj.weight", "model.layers.1x.mlp",
             "model.layers.0.self_attn.q_proj.weight", "q_proj|k_proj", "lm_head.weight",
             "a.b*c?d(e)[f]{g}+h^$\\"]  # fmt: skip
    for f in ["layers.1.", "q_proj|k_proj", "(e)[f]", "*c?", "h^$\\", "up_proj", "{g}+"]:
        (pattern, _), = parse_alpha_for([f"{re.escape(f)}=0.5"])  # fmt: skip
        assert [bool(re.search(pattern, n)) for n in names] == [f in n for n in names], f


# -- refused ---------------------------------------------------------------------------------------------------------

TA = {  # task_arithmetic, chat 0.5, cp 1: each refusal below changes one thing of it
    "merge_method": "task_arithmetic",
    "base_model": "/m/base",
    "models": [{"model": "/m/chat", "parameters": {"weight": 0.5}}, {"model": "/m/cp", "parameters": {"weight": 1.0}}],
}
LINEAR = {
    "merge_method": "linear",
    "models": [
        {"model": f"/m/{m}", "parameters": {"weight": w}} for m, w in (("cp", 1), ("chat", 0.5), ("base", -0.5))
    ],
    "parameters": {"normalize": False},
}
DELETE = object()


def edit(cfg, *changes):
    """A deep copy of cfg with (key path, value) changes: 'models[1].parameters.weight', 0.8 (DELETE removes the
    key; an index one past a list's end appends)."""
    import copy
    import re

    cfg = copy.deepcopy(cfg)
    for path, value in changes:
        keys = [int(k) if k.isdigit() else k for k in re.findall(r"[^.\[\]]+", path)]
        node = cfg
        for k in keys[:-1]:
            node = node.setdefault(k, {}) if isinstance(node, dict) else node[k]
        if value is DELETE:
            del node[keys[-1]]
        elif isinstance(node, list) and keys[-1] == len(node):
            node.append(value)
        else:
            node[keys[-1]] = value
    return cfg


def ta(*changes):
    return edit(TA, *changes)


def linear(*changes):
    return edit(LINEAR, *changes)


def filtered(*pairs):
    """[{filter: F, value: V}, ..., {value: LAST}] from F, V, ..., LAST."""
    *conds, last = pairs
    return [{"filter": f, "value": v} for f, v in zip(conds[::2], conds[1::2])] + [{"value": last}]


REFUSED = {  # name: (config, the key path the error names)
    "method_ties": (ta(("merge_method", "ties")), "merge_method"),
    "method_missing": (ta(("merge_method", DELETE)), "merge_method"),
    "slices": (ta(("slices", [{"sources": [{"model": "/m/cp", "layer_range": [0, 2]}]}])), "slices"),
    "modules": (ta(("modules", {"decoder": {"models": TA["models"]}})), "modules"),
    "layer_range": (ta(("models[0].layer_range", [0, 4])), "models[0].layer_range"),
    "density": (ta(("models[0].parameters.density", 0.5)), "models[0].parameters.density"),
    "density_top": (ta(("parameters.density", 0.7)), "parameters.density"),
    "lambda": (ta(("parameters.lambda", 0.5)), "parameters.lambda"),
    "lambda_filtered": (ta(("parameters.lambda", filtered("mlp", 2, 1))), "parameters.lambda[0].value"),
    "rescale": (ta(("parameters.rescale", True)), "parameters.rescale"),
    "int8_mask": (ta(("parameters.int8_mask", True)), "parameters.int8_mask"),
    "normalize": (ta(("parameters.normalize", True)), "parameters.normalize"),
    "normalize_not_bool": (ta(("parameters.normalize", "maybe")), "parameters.normalize"),
    "normalize_per_model": (ta(("models[0].parameters.normalize", False)), "models[0].parameters.normalize"),
    "unknown_parameter": (ta(("models[1].parameters.gamma", 0.01)), "models[1].parameters.gamma"),
    "unknown_top_key": (ta(("random_seed", 42)), "random_seed"),
    "embed_slerp": (ta(("embed_slerp", True)), "embed_slerp"),  # bench-anchor's mk_ext_tokcp_slerp.yml
    "chat_template": (ta(("chat_template", "chatml")), "chat_template"),
    "tokenizer_source_union": (ta(("tokenizer_source", "union")), "tokenizer_source"),
    "tokenizer_source_base": (ta(("tokenizer_source", "base")), "tokenizer_source"),
    "tokenizer_union": (ta(("tokenizer.source", "union")), "tokenizer.source"),  # mk_ext_tokunion.yml
    "tokenizer_base": (ta(("tokenizer.source", "base")), "tokenizer.source"),  # mk_ext_tokbase.yml
    "tokenizer_base_path": (ta(("tokenizer.source", "/m/base")), "tokenizer.source"),
    "tokenizer_chat": (ta(("tokenizer.source", "/m/chat")), "tokenizer.source"),
    "tokenizer_default_union": (ta(("tokenizer.pad_to_multiple_of", None)), "tokenizer.source"),
    "tokenizer_tokens": (ta(("tokenizer", {"source": "/m/cp", "tokens": {"<x>": {"source": "/m/chat"}}})),
                         "tokenizer.tokens"),
    "tokenizer_pad": (ta(("tokenizer", {"source": "/m/cp", "pad_to_multiple_of": 64})), "tokenizer.pad_to_multiple_of"),
    "tokenizer_both": (ta(("tokenizer.source", "/m/cp"), ("tokenizer_source", "/m/cp")), "tokenizer"),
    "base_with_parameters": (ta(("models[2]", {"model": "/m/base", "parameters": {"weight": 1}})),
                             "models[2].parameters"),
    "base_model_missing": (ta(("base_model", DELETE)), "base_model"),
    "three_models": (ta(("models[2]", {"model": "/m/x", "parameters": {"weight": 0.2}})), "models"),
    "one_model": (ta(("models", TA["models"][1:])), "models"),
    "no_models": (ta(("models", [])), "models"),
    "model_twice": (ta(("models[1].model", "/m/chat")), "models"),
    "weights_do_not_fit": (ta(("models[1].parameters.weight", 0.8)), "models[*].parameters.weight"),
    "cp_filtered_not_1": (ta(("models[1].parameters.weight", filtered("mlp", 0.9, 1))), "models[*].parameters.weight"),
    "both_weight_1": (ta(("models[0].parameters.weight", 1.0)), "models[1].parameters.weight"),  # mk_a1.0.yml
    "gradient": (ta(("models[0].parameters.weight", [0.2, 0.8])), "models[0].parameters.weight"),
    "no_catch_all": (ta(("models[0].parameters.weight", filtered("mlp", 0.5, 0)[:1])), "models[0].parameters.weight"),
    "weight_missing": (ta(("models[1].parameters", {})), "models[1].parameters.weight"),
    "weight_text": (ta(("models[0].parameters.weight", "half")), "models[0].parameters.weight"),
    "weight_nan": (ta(("models[0].parameters.weight", float("nan"))), "models[0].parameters.weight"),
    "weight_bool": (ta(("models[1].parameters.weight", True)), "models[1].parameters.weight"),
    "filter_extra_key": (ta(("models[0].parameters.weight", [{"filter": "x", "value": 1, "when": 2}, {"value": 0.5}])),
                         "models[0].parameters.weight[0]"),
    "filter_gradient": (ta(("models[0].parameters.weight", [{"filter": "x", "value": [0, 1]}, {"value": 0.5}])),
                        "models[0].parameters.weight[0]"),
    "lora": (ta(("base_model", "/m/base+/m/adapter")), "base_model"),
    "revision": (ta(("models[1].model", "org/cp@main")), "models[1].model"),
    "model_not_text": (ta(("models[1].model", {"path": "/m/cp"})), "models[1].model"),
    "dtype_float64": (ta(("dtype", "float64")), "dtype"),
    "out_dtype_float64": (ta(("dtype", "float32"), ("out_dtype", "float64")), "out_dtype"),
    "dtype_unknown": (ta(("dtype", "int8")), "dtype"),
    "linear_two_models": (linear(("models", LINEAR["models"][:2])), "models"),
    "linear_not_mirrored": (linear(("models[2].parameters.weight", -0.4)), "models[*].parameters.weight"),
    "linear_filters_differ": (linear(("models[1].parameters.weight", filtered("mlp", 0, 0.5))),
                              "models[*].parameters.weight"),
    "linear_alpha_0": (linear(("models[1].parameters.weight", 0), ("models[2].parameters.weight", 0)),
                       "models[*].parameters.weight"),
    "linear_base_model_outside": (linear(("base_model", "/m/other")), "base_model"),
    "linear_density": (linear(("parameters.density", 0.5)), "parameters.density"),
    "top_level_list": ([TA], "(top level)"),
    "method_not_text": (ta(("merge_method", ["task_arithmetic"])), "merge_method"),
    "dtype_not_text": (ta(("dtype", ["bfloat16"])), "dtype"),
    "tokenizer_source_mapping": (ta(("tokenizer.source", {"model": "/m/cp"})), "tokenizer.source"),
    "tokenizer_source_null": (ta(("tokenizer.source", None)), "tokenizer.source"),
}  # fmt: skip


@pytest.mark.parametrize("change", [("parameters", DELETE), ("parameters.normalize", True)], ids=["default", "true"])
def test_linear_with_normalize_is_accepted_as_its_weights_sum_to_1(tmp_path, change):
    """cp 1, chat w, base -w: normalize divides by 1 for every tensor, so mergekit's merge is the Chat Vector."""
    m = read_mergekit_config(config_file(tmp_path, linear(change)))
    assert m.alpha == 0.5 and any("sum to 1" in note for note in m.notes)


def test_tokenizer_source_base_is_accepted_when_cp_has_bases_vocabulary(tmp_path):
    from chatvec_fast.testing.synthetic import make_triple

    same = make_triple(str(tmp_path / "same"), "tiny")
    cfg = edit(TA, ("base_model", same["base"]), ("models[0].model", same["chat"]), ("models[1].model", same["cp"]),
               ("tokenizer_source", "base"))  # fmt: skip
    m = read_mergekit_config(config_file(tmp_path, cfg, "same.yml"))
    assert m.cp == same["cp"] and any("whose vocabulary is cp's" in note for note in m.notes)
    expanded = make_triple(str(tmp_path / "expanded"), "tiny", cp_vocab=600)
    cfg = edit(cfg, ("base_model", expanded["base"]), ("models[0].model", expanded["chat"]),
               ("models[1].model", expanded["cp"]))  # fmt: skip
    with pytest.raises(ConfigError, match=r"tokenizer_source: 'base' gives .* vocabulary is not base's \(600 tokens"):
        read_mergekit_config(config_file(tmp_path, cfg, "expanded.yml"))


def test_the_refused_configs_change_one_thing_of_accepted_ones(tmp_path):
    assert read_mergekit_config(config_file(tmp_path, TA, "ta.yml")).alpha == 0.5
    assert read_mergekit_config(config_file(tmp_path, LINEAR, "linear.yml")).alpha == 0.5


@pytest.mark.parametrize("name", REFUSED)
def test_refused(tmp_path, name):
    cfg, key = REFUSED[name]
    path = config_file(tmp_path, cfg)
    with pytest.raises(ConfigError) as info:
        read_mergekit_config(path)
    message = str(info.value)
    assert isinstance(info.value, ChatvecError)
    assert message.startswith(f"{path}: {key}"), message
    assert "\n" not in message and "; " in message, message  # one line: the problem; the fix


def leaf_paths(node, prefix=""):
    """Key paths of every value in a parsed YAML tree, containers included."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        path = f"{prefix}[{k}]" if isinstance(k, int) else f"{prefix}.{k}" if prefix else k
        yield path
        yield from leaf_paths(v, path)


@pytest.mark.parametrize("name", ["TA", "LINEAR", "filtered_weights"])
def test_any_odd_value_is_a_config_error(tmp_path, name):
    """Every value of an accepted config replaced by odd YAML: the reader answers or raises ConfigError, nothing
    else (the config is input like any other)."""
    cfg = {"TA": TA, "LINEAR": LINEAR}.get(name) or yaml.safe_load(textwrap.dedent(ACCEPTED[name][0]))
    odd = [None, [], {}, "", "x", True, -1, 1e300, float("inf"), [{"value": 1}], {"filter": 1}, [[1]], "+@"]
    path = str(tmp_path / "odd.yml")
    for key in leaf_paths(cfg):
        for value in odd:
            with open(path, "w") as fh:
                yaml.safe_dump(edit(cfg, (key, value)), fh)
            try:
                read_mergekit_config(path)
            except ConfigError:
                pass


@pytest.mark.parametrize(
    "text, words",
    [
        ("", "is empty"),
        ("merge_method: [unclosed\n", "not valid YAML"),
        (BENCH_A05 + "---\n" + BENCH_A05, "holds 2 YAML documents"),  # bench-anchor's mk_multi.yml has 4
    ],
)
def test_refused_files(tmp_path, text, words):
    path = config_file(tmp_path, text)
    with pytest.raises(ConfigError, match=words) as info:
        read_mergekit_config(path)
    assert str(info.value).startswith(f"{path}: ")
    with pytest.raises(ConfigError, match="cannot read"):
        read_mergekit_config(str(tmp_path / "missing.yml"))


# -- end to end --------------------------------------------------------------------------------------------------------

E2E = {  # name: (config with {base} {chat} {cp}, the most ulps mergekit's output may differ from ours, and why)
    # bench-anchor's recipe. mergekit rounds five times in bfloat16 (chat - base, cp - base, the weight product,
    # the sum, base + sum), so near-zero results are off by thousands of their own ulps; measured in ulps of the
    # element's largest input magnitude (max |base|, |chat|, |cp|) it is within 4 (6 allowed: the intermediates
    # reach twice that magnitude).
    "task_arithmetic_bf16": ("""\
        merge_method: task_arithmetic
        base_model: {base}
        models:
          - model: {chat}
            parameters:
              weight: 0.5
          - model: {cp}
            parameters:
              weight: 1.0
        parameters:
          normalize: false
          lambda: 1.0
        dtype: bfloat16
        """, ("input", 6)),
    # float32 arithmetic (errors ~2^-24 of the inputs), then one rounding to bfloat16: at most 1 ulp off, where the
    # float32 value sits next to a rounding boundary. A filter read as a regex would give q_proj and k_proj
    # weight 2 instead of 0.7: hundreds of ulps.
    "task_arithmetic_filtered_fp32": ("""\
        merge_method: task_arithmetic
        base_model: {base}
        models:
          - model: {cp}
            parameters:
              weight: 1.0
          - model: {chat}
            parameters:
              weight:
                - filter: embed_tokens
                  value: 0
                - filter: "q_proj|k_proj"
                  value: 2.0
                - filter: layers.1.
                  value: 0.3
                - value: 0.7
        dtype: float32
        out_dtype: bfloat16
        """, ("result", 1)),
    # mergekit's linear widens bfloat16 to float32 for its sum, so it rounds (nearly) once, as we do
    "linear_bf16": ("""\
        merge_method: linear
        models:
          - {{model: {chat}, parameters: {{weight: 0.5}}}}
          - {{model: {base}, parameters: {{weight: -0.5}}}}
          - {{model: {cp}, parameters: {{weight: 1.0}}}}
        parameters: {{normalize: false}}
        dtype: bfloat16
        """, ("result", 1)),
}  # fmt: skip


def mergekit_weight(setting, name):
    """chat's weight for a tensor as mergekit 0.1.5 resolves it (config.evaluate_setting), written out again."""
    for cond in setting if isinstance(setting, list) else [{"value": setting}]:
        f = cond.get("filter")
        if f is None or f == "*" or f in name:
            return float(cond["value"])


@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    """The tiny triple, each config, chatvec's merge of its translation, and (if installed) mergekit's merge."""
    from chatvec_fast.testing.synthetic import make_triple

    root = tmp_path_factory.mktemp("mergekit_e2e")
    paths = make_triple(str(root / "models"), "tiny")
    runs = {}
    for name, (text, _) in E2E.items():
        cfg = config_file(root, textwrap.dedent(text).format(**paths), f"{name}.yml")
        m = read_mergekit_config(cfg)
        # One config keeps a `q_proj|k_proj` filter, which matches nothing in mergekit either; chatvec refuses a
        # rule that changes nothing unless allowed (tests/test_options.py), so it is allowed here.
        chatvec_fast.merge(m.base, m.chat, m.cp, str(root / "chatvec" / name), **m.merge_options(),
                           allow_unmatched=True)  # fmt: skip
        runs[name] = (cfg, m, root / "chatvec" / name, root / "mergekit" / name)
    if os.path.exists(MERGEKIT_YAML):
        # mergekit-yaml's own entry point, once per config, in one interpreter: each start costs ~5 s of imports
        calls = "".join(f"main.main([{str(c)!r}, {str(mk)!r}] + FLAGS, standalone_mode=False)\n"
                        for c, _, _, mk in runs.values())  # fmt: skip
        script = "from mergekit.scripts.run_yaml import main\n"
        script += "FLAGS = ['--no-copy-tokenizer', '--no-write-model-card', '--quiet']\n"
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        python = os.path.join(os.path.dirname(MERGEKIT_YAML), "python")
        r = subprocess.run([python, "-c", script + calls], capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
    return paths, runs


@pytest.mark.parametrize("name", E2E)
def test_translation_is_mergekits_merge_exactly(e2e, name):
    """chatvec's output with the translated arguments == the float64 reference with each tensor's weight resolved
    the way mergekit resolves it (substring filters), rounded once: bit for bit."""
    paths, runs = e2e
    cfg, m, out, _ = runs[name]
    setting = yaml.safe_load(open(cfg))["models"]
    chat_setting = next(e["parameters"]["weight"] for e in setting if e["model"] == paths["chat"])
    base, chat, cp, got = (load_weights(p) for p in (paths["base"], paths["chat"], paths["cp"], out))
    assert set(got) == set(cp)
    for k in got:
        call = tensor_call(base[k], chat[k], cp[k], [mergekit_weight(chat_setting, k)], "BF16")
        want = oracle_outputs(call, cp[k].shape)[0]
        assert_bits_equal(got[k], want, f"{name}: {k}")


@pytest.mark.parametrize("name", E2E)
def test_mergekit_output_is_within_its_rounding_error(e2e, name):
    if not os.path.exists(MERGEKIT_YAML):
        pytest.skip(f"mergekit is not installed at {MERGEKIT_YAML} (set MERGEKIT_YAML)")
    paths, runs = e2e
    _, _, ours, theirs = runs[name]
    unit, bound = E2E[name][1]
    base, chat, cp, got, mk = (load_weights(p) for p in (paths["base"], paths["chat"], paths["cp"], ours, theirs))
    assert set(mk) == set(got)
    worst = 0.0
    for k in got:
        assert mk[k].dtype == got[k].dtype and mk[k].shape == got[k].shape, k
        if unit == "result":
            worst = max(worst, float(ulp_distance(mk[k], got[k]).max()))
            continue
        largest = torch.stack([t[k].double().abs() for t in (base, chat, cp)]).amax(0).clamp(min=2.0**-126)
        ulp = torch.ldexp(torch.ones_like(largest), torch.frexp(largest)[1] - 8)  # bfloat16: 8 significant bits
        worst = max(worst, float(((mk[k].double() - got[k].double()).abs() / ulp).max()))
    assert worst <= bound, f"{name}: mergekit differs from chatvec by {worst} ulps of the {unit} (allowed {bound})"


def test_cli_merge_with_a_mergekit_config(e2e, tmp_path):
    """`chatvec merge --mergekit-config cfg.yml --out DIR` writes what the API wrote from the translation, and
    refuses options the config already gives."""
    from conftest import assert_one_line_error, cli

    paths, runs = e2e
    cfg, m, api_out, _ = runs["task_arithmetic_bf16"]
    out = tmp_path / "cli"
    r = cli("merge", "--mergekit-config", cfg, "--out", out, "--quiet")
    assert r.returncode == 0, r.stderr
    assert "note:" in r.stderr  # what was interpreted, and how
    got, want = load_weights(out), load_weights(api_out)
    assert got.keys() == want.keys() and all(torch.equal(got[k].view(torch.int16), want[k].view(torch.int16))
                                             for k in got)  # fmt: skip
    r = cli("merge", "--mergekit-config", cfg, "--out", tmp_path / "x", "--alpha", "0.3")
    assert_one_line_error(r, "--alpha")
    r = cli("merge", "--out", tmp_path / "y")
    assert_one_line_error(r, "--base", "--mergekit-config")
