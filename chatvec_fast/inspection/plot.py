"""The plot by layer (inspect.png): ||chat - base|| / ||base|| per layer and, with cp, the cosine of the chat
vector with cp's own change. matplotlib is imported here only, through its object API (no pyplot state, no
global backend change), so embedding the plot in another report leaves the caller's matplotlib alone."""

from __future__ import annotations

import importlib.util
import math

from ..errors import ChatvecError

INSTALL = "pip install 'chatvec-fast[tune]'"


class PlotUnavailable(ChatvecError, ImportError):
    """matplotlib is not installed."""


def require_matplotlib():
    """Raises PlotUnavailable, naming the install command, when matplotlib is missing (checked before work)."""
    if importlib.util.find_spec("matplotlib") is None:
        raise PlotUnavailable(f"the plot by layer (inspect.png) needs matplotlib, which is not installed: {INSTALL}")


def _finite(values):
    return [v if v is not None and math.isfinite(v) else math.nan for v in values]


def plot_layers(inspection, path: str):
    """Writes the PNG: one line per block stack (model.layers, ...), x = the block's index."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    stacks: dict[str, list] = {}
    for row in inspection.layers:
        if row.layer is not None:
            stacks.setdefault(row.name.rsplit(".", 1)[0], []).append(row)
    panels = 2 if inspection.with_cp else 1
    fig = Figure(figsize=(9, 3.2 * panels), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(panels, 1, sharex=True, squeeze=False)[:, 0]
    for stem, rows in stacks.items():
        x = [r.layer for r in rows]
        axes[0].plot(x, _finite(r.relative for r in rows), marker="o", markersize=3, label=stem)
        if inspection.with_cp:
            axes[1].plot(x, _finite(r.cosine for r in rows), marker="o", markersize=3, label=stem)
    axes[0].set_ylabel("‖chat − base‖ / ‖base‖")
    finite = [v for rows in stacks.values() for v in _finite(r.relative for r in rows) if not math.isnan(v)]
    axes[0].set_ylim(0, 1.1 * max(finite) if finite and max(finite) > 0 else 1)  # from 0: sizes compare by eye
    if inspection.with_cp:
        axes[1].set_ylabel("cos(chat − base, cp − base)")
        axes[1].axhline(0.0, color="grey", linewidth=0.8)
    axes[-1].set_xlabel("layer")
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(stacks) > 1:
        axes[0].legend()
    bad = sum(1 for rows in stacks.values() for r in rows if r.notes and any("NaN" in n or "= 0" in n for n in r.notes))
    outside = sum(1 for r in inspection.layers if r.layer is None)
    title = f"chat vector by layer ({outside} tensors outside the layers: see the table)"
    if bad:
        title += f"; {bad} layers not finite (left out, see the table)"
    if not stacks:
        title = "no numbered layers in these checkpoints: see the table"
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, format="png")
