"""mergekit YAML configs that compute the Chat Vector merge, translated to chatvec's merge arguments.

mergekit 0.1.5 (read from its source) writes  cp + alpha * (chat - base)  two ways:
- task_arithmetic, base_model BASE: base + lambda * sum_i w_i * (m_i - base); with lambda 1 and normalize false
  (the defaults), cp's weight 1 and chat's alpha;
- linear: sum_i w_i * m_i, divided by sum_i w_i when normalize (the default); weights 1 (cp), alpha (chat), -alpha.
A weight may be a list of {filter, value}: the first entry whose filter is a substring of the tensor name (or is '*'
or absent) gives it; chat's become alpha_for rules. Anything chatvec cannot honour exactly is refused with a
ConfigError naming the file, the key and what chatvec can do instead.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..read.model_files import different_vocabularies
from .mergekit_load import ConfigError, load_documents, short
from .mergekit_terms import DTYPES, FITS, FLAGS, KEYS, METHODS, REFUSED_KEYS, TOKENIZER, UNKNOWN, WHY

__all__ = ["ConfigError", "MergekitMerge", "read_mergekit_config"]


@dataclass(frozen=True)
class MergekitMerge:
    """chatvec's merge arguments for one mergekit config."""

    base: str  # model references as written (paths or Hub ids)
    chat: str
    cp: str
    alpha: float
    alpha_for: tuple[str, ...]  # 'REGEX=VALUE', first match wins (re.search)
    dtype: str | None  # bf16, f16, f32, or None: cp's dtype
    source: str  # the config file
    notes: tuple[str, ...]  # what was interpreted and how

    def merge_options(self) -> dict:
        """The keyword arguments of chatvec_fast.merge that this config sets."""
        return {"alpha": self.alpha, "alpha_for": self.alpha_for, "dtype": self.dtype}


def read_mergekit_config(path: str) -> MergekitMerge:
    """Reads a mergekit YAML that computes cp + alpha * (chat - base); raises ConfigError for any other.

    >>> m = read_mergekit_config("chatvec.yml")
    >>> chatvec_fast.merge(m.base, m.chat, m.cp, "out", **m.merge_options())
    """
    docs = load_documents(path)
    if len(docs) != 1:
        what = "is empty" if not docs else f"holds {len(docs)} YAML documents (a mergekit-multi file)"
        raise ConfigError(f"{path}: {what}; chatvec merge takes one config (several alphas: chatvec sweep --alphas)")
    return _Reader(path).translate(docs[0])


class _Reader:
    def __init__(self, source: str):
        self.source, self.notes = source, []

    def fail(self, key: str, problem: str, fix: str):
        raise ConfigError(f"{self.source}: {short(key) if not isinstance(key, str) else key[:200]}: {problem}; {fix}")

    def translate(self, doc) -> MergekitMerge:
        if not isinstance(doc, dict):
            self.fail("(top level)", f"expected a mapping, got {type(doc).__name__}", "write a mergekit merge config")
        for key in doc:
            if key in REFUSED_KEYS or key not in KEYS:
                self.fail(str(key), *REFUSED_KEYS.get(key, UNKNOWN))
        method = doc.get("merge_method")
        if not isinstance(method, str) or method not in METHODS:
            fix = ("write merge_method: task_arithmetic, with base_model: BASE and models CHAT (weight: alpha) and CP "
                   "(weight: 1); or use mergekit for other methods")  # fmt: skip
            self.fail("merge_method", f"{short(method)}: chatvec computes cp + alpha * (chat - base) only", fix)
        shared, per_model = METHODS[method]
        glob = self._params(doc.get("parameters"), "parameters", method, (*shared, *per_model), {})
        models = doc.get("models")
        if not isinstance(models, list) or not models:
            self.fail("models", "missing or not a list", "list chat and cp (linear: and base) with their weights")
        entries = [self._model(e, f"models[{i}]", method, per_model, shared) for i, e in enumerate(models)]
        if len({ref for ref, _, _ in entries}) != len(entries):
            self.fail("models", "lists a model twice", "list each model once")
        base_model = None if doc.get("base_model") is None else self._ref(doc["base_model"], "base_model")
        tokenizer, tokenizer_key = self._tokenizer(doc)
        for name, default in shared.items():
            rules = self._chain([glob.get(name, [])], default, f"parameters.{name}")
            if method == "linear" and name == "normalize":  # any value: the weights sum to 1 (see _linear)
                if any(value for _, value, _ in rules):
                    self.notes.append("linear with normalize: cp 1, chat w and base -w sum to 1 for every tensor, "
                                      "so dividing by the sum changes nothing")  # fmt: skip
                continue
            self._require(rules, name)
        form = self._task_arithmetic if method == "task_arithmetic" else self._linear
        options, base_note = form(entries, glob, base_model)
        if not options:
            what = "got " + ", ".join(f"{_show(r)} ({at})" for _, at, r in self.weighted)
            self.fail("models[*].parameters.weight", what, FITS[method][1])
        base, (chat, chat_at, rules), (cp, cp_at, _) = self._pick(options, tokenizer)
        self.notes.append(f"{method}: {FITS[method][0]} = cp + w*(chat - base); cp: {cp_at}, chat: {chat_at}, "
                          f"base: {base_note}")  # fmt: skip
        if tokenizer in ("base", base) and tokenizer != cp:
            differ = different_vocabularies(base, cp)
            if differ:
                self.fail(
                    tokenizer_key,
                    f"{short(tokenizer)} gives the output base's tokenizer, and {differ}",
                    f"set it to cp ({cp!r}) or remove it",
                )
            self.notes.append(f"{tokenizer_key}: base, whose vocabulary is cp's (same tokens, same vocab_size): "
                              "chatvec writes cp's tokenizer, the same tokens")  # fmt: skip
        elif tokenizer is not None and (tokenizer != cp or tokenizer == "union"):  # mergekit's words first
            what = TOKENIZER.get(str(tokenizer), "is not cp; chatvec writes cp's tokenizer")
            self.fail(tokenizer_key, f"{short(tokenizer)} {what}", f"set it to cp ({cp!r}) or remove it")
        if tokenizer is None:
            self.notes.append("no tokenizer setting: mergekit copies base_model's (and stops if cp's vocabulary is "
                              "larger), chatvec cp's")  # fmt: skip
        elif tokenizer not in ("base", base) or tokenizer == cp:
            self.notes.append(f"{tokenizer_key}: cp, as chatvec (mergekit lines rows up by token, chatvec by id: the "
                              "same when cp's vocabulary extends base's)")  # fmt: skip
        self.notes.append("chatvec gives the tokenizer chat's chat template (--chat-template-from cp: cp's)")
        *filtered, (_, alpha, _) = rules
        alpha_for = tuple(f"{re.escape(f)}={v!r}" for f, v, _ in filtered)
        if filtered:
            self.notes.append(f"chat's weight filters -> alpha_for {list(alpha_for)}: mergekit matches a filter as a "
                              "substring of the tensor name, first match wins, so each is regex-escaped")  # fmt: skip
        return MergekitMerge(base, chat, cp, alpha, alpha_for, self._dtype(doc), self.source, tuple(self.notes))

    def _model(self, entry, at, method, per_model, shared):
        if not isinstance(entry, dict) or "model" not in entry:
            self.fail(at, "expected {model: PATH, parameters: {weight: ...}}", "write each model that way")
        for key in set(entry) - {"model", "parameters"}:
            why = "needs slices" if key == "layer_range" else "is not a key of a mergekit model (mergekit ignores it)"
            self.fail(f"{at}.{key}", f"{why}; chatvec merges whole checkpoints", "remove it")
        params = self._params(entry.get("parameters"), f"{at}.parameters", method, per_model, shared)
        return self._ref(entry["model"], f"{at}.model"), params, at

    def _params(self, params, at, method, allowed, top_level_only) -> dict:
        """name -> its rules [(filter or None, value, key path)]."""
        if not isinstance(params, (dict, type(None))):
            self.fail(at, f"expected a mapping, got {short(params)}", "write parameters: {weight: ...}")
        out = {}
        for name, setting in (params or {}).items():
            if name in top_level_only:
                self.fail(f"{at}.{name}", "mergekit reads it from the top level only", f"move it to parameters.{name}")
            if name not in allowed:
                self.fail(f"{at}.{name}", f"not a parameter of {method} (mergekit ignores it)", "remove it")
            out[name] = self._rules(setting, f"{at}.{name}", name in FLAGS)
        return out

    def _rules(self, setting, at, flag) -> list:
        if not isinstance(setting, (dict, list)):
            return [(None, self._value(setting, at, flag), at)]
        conds = [setting] if isinstance(setting, dict) else setting
        if not conds or not all(isinstance(c, dict) for c in conds):
            self.fail(at, "a gradient (values interpolated over the layers)", "give per-tensor values with filters")
        rules = []
        for i, cond in enumerate(conds):
            where = at if isinstance(setting, dict) else f"{at}[{i}]"
            f, value = cond.get("filter"), cond.get("value")
            if set(cond) - {"filter", "value"} or not isinstance(f, (str, type(None))) or isinstance(value, list):
                self.fail(where, f"expected {{filter: TEXT, value: NUMBER}}, got {short(cond)}", "write it that way")
            # '' is a substring of every name, so it matches every tensor, as '*' and no filter do
            value = self._value(value, f"{where}.value", flag)
            rules.append((None if f in (None, "*", "") else f, value, f"{where}.value"))
        return rules

    def _chain(self, rule_lists, default, at) -> list:
        """As mergekit resolves a parameter: model's rules, top-level ones, default; up to one matching all."""
        out = []
        for rule in [r for rules in rule_lists for r in rules] + [(None, default, f"{at} (default)")]:
            if rule[1] is None:
                self.fail(at, "some tensors get no weight (mergekit stops)", "give one; end filters with {value: ...}")
            out.append(rule)
            if rule[0] is None:
                return out

    def _require(self, rules, name):
        for _, value, at in rules:
            if value != WHY[name][0]:
                self.fail(at, f"{short(value)} {WHY[name][1]}", WHY[name][2])

    def _weights(self, params, glob, at):
        return self._chain([params.get("weight", []), glob.get("weight", [])], None, f"{at}.parameters.weight")

    def _task_arithmetic(self, entries, glob, base_model):
        if base_model is None:
            self.fail("base_model", "missing: task_arithmetic adds task vectors to it", "set base_model: BASE")
        self.weighted = []
        for ref, params, at in entries:
            if ref != base_model:
                density = [params.get("density", []), glob.get("density", [])]
                self._require(self._chain(density, 1.0, f"{at}.parameters.density"), "density")
                self.weighted.append((ref, at, self._weights(params, glob, at)))
            elif params:
                self.fail(f"{at}.parameters", "task_arithmetic ignores the base model's parameters", "remove them")
        if len(models := self.weighted) != 2:
            self.fail("models", f"{len(models)} models besides base_model", "list chat (weight alpha) and cp (1)")
        return [(base_model, c, p) for p in models for c in models if c is not p and _ones(p[2])], "base_model"

    def _linear(self, entries, glob, base_model):
        if len(entries) != 3:
            self.fail("models", f"{len(entries)} models", "list cp (weight 1), chat (weight alpha) and base (-alpha)")
        if base_model is not None and base_model not in [ref for ref, _, _ in entries]:
            self.fail("base_model", "not one of the models (linear adds it as a fourth)", "list it or remove it")
        self.weighted = models = [(ref, at, self._weights(params, glob, at)) for ref, params, at in entries]
        # (base, chat, cp): cp weighs 1 everywhere; base has chat's filters with negated values; chat is not all 0
        options = [(b[0], c, p) for p in models for c in models for b in models if len({p[1], c[1], b[1]}) == 3
                   and _ones(p[2]) and any(v for _, v, _ in c[2]) and base_model in (None, b[0])
                   and [(f, -v) for f, v, _ in b[2]] == [(f, v) for f, v, _ in c[2]]]  # fmt: skip
        positive = [o for o in options if next(v > 0 for _, v, _ in o[1][2] if v)]  # chat's first non-zero weight
        if base_model is None and positive:
            return positive, "weight -w, w > 0 (the chat vector is added)"
        return options, "base_model" if base_model else "weight -w"

    def _pick(self, options, tokenizer):
        """One (base, chat, cp) reading of the weights; cp is ambiguous when chat's weight is 1 too."""
        named = [o for o in options if o[2][0] == tokenizer]
        if len({o[2][0] for o in options}) > 1:
            a, b = sorted({o[2][1] for o in options})[:2]
            if not named:
                what = f"{a} and {b} both fit cp (weight 1): the same tensors either way, but chatvec writes cp's files"
                fix = "name cp with tokenizer: {source: CP}, or use --base/--chat/--cp"
                self.fail(f"{b}.parameters.weight", what, fix)
            self.notes.append(f"chat and cp both have weight 1: cp is {tokenizer!r}, the tokenizer source")
        return (named or options)[0]

    def _tokenizer(self, doc):
        """(the tokenizer source or None, its key)."""
        tok, source = doc.get("tokenizer"), doc.get("tokenizer_source")
        if tok is not None and source is not None:
            self.fail("tokenizer", "given with tokenizer_source (mergekit refuses both)", "keep one")
        if not isinstance(tok, (dict, type(None))):
            self.fail("tokenizer", f"expected a mapping, got {short(tok)}", "write tokenizer: {source: CP}")
        for key, value in (tok or {}).items():
            if key not in ("source", "tokens", "pad_to_multiple_of") or (key != "source" and value):
                self.fail(f"tokenizer.{key}", TOKENIZER.get(key, "not a mergekit tokenizer key"), "remove it")
        if tok is None:
            return source, "tokenizer_source"
        return tok.get("source", "union") or "union", "tokenizer.source"  # mergekit's default is union; null is refused

    def _dtype(self, doc):
        names = {k: re.sub(r"^torch\.", "", v) if isinstance(v, str) else v for k, v in doc.items() if "dtype" in k}
        for key, name in names.items():
            if name is not None and not (isinstance(name, str) and name in DTYPES):
                self.fail(key, f"{short(doc[key])}: not a dtype chatvec can write", "use bfloat16, float16 or float32")
        if names.get("dtype"):
            self.notes.append(f"dtype {names['dtype']}: mergekit's arithmetic; chatvec's is float64, rounded once")
        key = "out_dtype" if names.get("out_dtype") else "dtype"  # mergekit writes `dtype` when out_dtype is absent
        if not names.get(key):
            self.notes.append("no dtype: mergekit writes the inputs' (promoted) dtype, chatvec cp's, tensor by tensor")
            return None
        if DTYPES[names[key]] is None:
            self.fail(key, "float64 output: chatvec writes merges in bf16, f16 or f32", "set out_dtype")
        self.notes.append(f"output dtype {names[key]} (mergekit's {key}) -> chatvec dtype {DTYPES[names[key]]}")
        return DTYPES[names[key]]

    def _ref(self, value, at) -> str:
        text = value if isinstance(value, str) else ""
        what = "a LoRA adapter (MODEL+LORA)" if "+" in text else "a revision (MODEL@REVISION)" if "@" in text else ""
        if not text or what:
            self.fail(at, f"{short(value)} names {what or 'no model'}", "name a directory holding a full checkpoint")
        return value

    def _value(self, value, at, flag: bool):
        """A bool, or a float as mergekit (pydantic) reads one: numbers, and text such as '1e-3' (YAML's text)."""
        try:
            if isinstance(value, bool) == flag and (flag or math.isfinite(value := float(value))):
                return value
        except (TypeError, ValueError):
            pass
        self.fail(at, f"{short(value)} is not {'true or false' if flag else 'a finite number'}", "correct it")


def _ones(rules) -> bool:
    return all(v == 1 for _, v, _ in rules)


def _show(rules) -> str:
    return repr(rules[0][1]) if len(rules) == 1 else "[" + ", ".join(f"{f or '*'}: {v!r}" for f, v, _ in rules) + "]"
