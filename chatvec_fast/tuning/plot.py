"""tune.png: the figures against alpha, readable at a glance.

Two panels sharing the alpha axis: above, the shares (language fidelity, line fidelity, stops; 0 to 1); below,
bits per byte (of --text, of --reference-text, of the answers). cp's and the chat model's figures are drawn
as flat lines of the same colour (dashed: cp, dotted: chat), and the recommended alpha as a vertical line
labelled with the rule. matplotlib is imported here only (the `[tune]` extra), with the Agg backend: no
display is needed.
"""

from __future__ import annotations

import os

from .results import PLOT_NAME

SHARES = (("fidelity", "language fidelity"), ("line_fidelity", "line fidelity"), ("stops", "stops"))
BITS = (("bits_per_byte", "--text"), ("reference_bits_per_byte", "--reference-text"),
        ("answer_bits_per_byte", "answers"))  # fmt: skip


def _series(rows: list[dict], key: str):
    points = [(r["alpha"], r[key]) for r in rows if r.get(key) is not None]
    return [a for a, _ in points], [v for _, v in points]


def plot(out: str, document: dict) -> str:
    """Draws document's rows into out/tune.png and returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(document["rows"], key=lambda r: r["alpha"])
    refs = document["references"]
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(9, 7), constrained_layout=True)
    for ax, series, label in ((top, SHARES, "share (0 to 1)"), (bottom, BITS, "bits per byte (lower: better)")):
        for i, (key, name) in enumerate(series):
            xs, ys = _series(rows, key)
            if not xs:
                continue
            colour = f"C{i}"
            ax.plot(xs, ys, marker="o", color=colour, label=name)
            for ref, style in (("cp", "--"), ("chat", ":")):
                value = (refs.get(ref) or {}).get(key)
                if value is not None:
                    ax.axhline(value, color=colour, linestyle=style, linewidth=1)
        for ref, style in (("cp", "--"), ("chat", ":")):  # one legend entry per reference, in grey
            if refs.get(ref):
                ax.plot([], [], color="grey", linestyle=style, linewidth=1, label=f"{ref} alone")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    top.set_ylim(-0.05, 1.05)
    bottom.set_xlabel("alpha (merged = cp + alpha x (chat - base))")
    rec = document.get("recommendation") or {}
    language = document["evaluation"]["language"]
    title = f"chatvec tune: language {language}"
    if rec.get("alpha") is not None:
        for ax in (top, bottom):
            ax.axvline(rec["alpha"], color="black", linewidth=1.5)
        top.annotate(f" recommended alpha {rec['alpha']:g} ({rec['rule']})", xy=(rec["alpha"], 0.97),
                     xycoords=("data", "axes fraction"), ha="left", va="top", fontsize="small")  # fmt: skip
        title += f"; recommended alpha {rec['alpha']:g}"
    fig.suptitle(title)
    path = os.path.join(out, PLOT_NAME)
    tmp = path + ".partial.png"
    fig.savefig(tmp, dpi=110, metadata={"Software": None})
    plt.close(fig)
    os.replace(tmp, path)
    return path
