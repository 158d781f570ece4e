"""Plots of a scaling analysis (:mod:`tinyinterp.scaling.analysis`): loss vs FLOPs with the frontier and fit,
final loss by depth and by heads, IsoFLOP curves and N_opt(C). Every point past one epoch of the training corpus is
drawn hollow (it repeats data). Each function draws into given axes, so the app and the figure script share them.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from tinyinterp.scaling.analysis import RunCurve, ScalingResult, reference_shape

def _mark(ax, x, y, epochs, color, **kw) -> None:
    """Filled markers for points within one epoch of the corpus, hollow ones for points that repeat data."""
    x, y, repeat = np.asarray(x), np.asarray(y), np.asarray(epochs) > 1
    ax.scatter(x[~repeat], y[~repeat], color=color, s=14, zorder=3, **kw)
    ax.scatter(x[repeat], y[repeat], facecolors="none", edgecolors=color, s=22, zorder=3)


def plot_loss_vs_flops(curves: list[RunCurve], result: ScalingResult, ax) -> None:
    """Each run's validation curve against compute, coloured by width; the frontier and the fitted power law."""
    import matplotlib.pyplot as plt

    layers, heads = reference_shape(curves)
    widths = sorted({c.d_model for c in curves})
    cmap = plt.get_cmap("viridis")
    colors = {w: cmap(i / max(1, len(widths) - 1)) for i, w in enumerate(widths)}
    labelled = set()
    for c in sorted(curves, key=lambda c: c.d_model):
        main = (c.n_layers, c.n_heads) == (layers, heads)
        color = colors[c.d_model] if main else "0.75"
        label = f"d_model {c.d_model}" if main and c.d_model not in labelled else None
        labelled.add(c.d_model) if main else None
        ax.plot(c.flops, c.val_loss, color=color, lw=1.2 if main else 0.7, label=label, zorder=2 if main else 1)
        _mark(ax, c.flops, c.val_loss, c.epochs(), color)
    fx = [p["flops"] for p in result.frontier]
    ax.plot(fx, [p["loss"] for p in result.frontier], color="k", lw=3, alpha=0.3, label="frontier", zorder=1)
    law = result.power_law()
    if law is not None:
        grid = np.geomspace(min(fx), max(fx), 100)
        f = result.fit
        interval = f" [{f['b_lo']:.2f}, {f['b_hi']:.2f}]" if "b_lo" in f else ""
        ax.plot(grid, law(grid), "r--", lw=1.5, label=f"L = {f['a']:.2f}·(C/1e12)^-{f['b']:.2f}{interval} + {f['c']:.2f}")
    ax.scatter([], [], facecolors="none", edgecolors="k", label="repeats data (> 1 epoch)")
    ax.set_xscale("log")
    ax.set_xlabel("training FLOPs")
    ax.set_ylabel("validation loss (nats/token)")
    ax.set_title(f"Loss vs compute (width series: {layers} layers, {heads} heads; other shapes grey)")
    ax.legend(fontsize=7)


def plot_by_axis(curves: list[RunCurve], axis: str, ax) -> bool:
    """Final loss against ``axis`` ('n_layers' or 'n_heads') at the width where it varies most; one line per budget."""
    layers, heads = reference_shape(curves)
    other = "n_heads" if axis == "n_layers" else "n_layers"
    ref_other = heads if axis == "n_layers" else layers
    pool = [c for c in curves if getattr(c, other) == ref_other]
    widths = Counter({w: len({getattr(c, axis) for c in pool if c.d_model == w}) for w in {c.d_model for c in pool}})
    width, n_values = widths.most_common(1)[0] if widths else (None, 0)
    if n_values < 2:
        ax.text(0.5, 0.5, f"no {axis} variation in this grid", ha="center", transform=ax.transAxes)
        return False
    for budget in sorted({c.budget for c in pool}):
        group = sorted((c for c in pool if c.d_model == width and c.budget == budget), key=lambda c: getattr(c, axis))
        if not group:
            continue
        x, y = [getattr(c, axis) for c in group], [c.final_loss for c in group]
        line, = ax.plot(x, y, lw=1, label=f"{group[0].budget_kind} budget {budget:.3g}")
        _mark(ax, x, y, [c.epochs()[-1] for c in group], line.get_color())
    ax.set_xlabel("layers" if axis == "n_layers" else "attention heads")
    ax.set_ylabel("final validation loss")
    ax.set_title(f"Loss by {'depth' if axis == 'n_layers' else 'heads'} at d_model {width} "
                 f"({other.replace('n_', '')} {ref_other}; hollow = repeats data)")
    ax.legend(fontsize=7)
    return True


def plot_isoflop(curves: list[RunCurve], result: ScalingResult, axes) -> None:
    """Left: final loss against N per FLOPs budget with each N_opt; right: N_opt against compute with its fit."""
    left, right = axes
    reference = reference_shape(curves)
    for opt in result.compute_optimal:
        group = sorted((c for c in curves if c.budget_kind == "flops" and c.budget == opt["flops"]
                        and (c.n_layers, c.n_heads) == reference), key=lambda c: c.n_matmul)
        x, y = [c.n_matmul for c in group], [c.final_loss for c in group]
        line, = left.plot(x, y, "-", lw=0.8, label=f"C = {opt['flops']:.3g}")
        _mark(left, x, y, [c.epochs()[-1] for c in group], line.get_color())
        left.axvline(opt["n_opt"], color=line.get_color(), ls=":", lw=1)
    left.set_xscale("log")
    left.set_xlabel("N (matmul parameters)")
    left.set_ylabel("final validation loss")
    left.set_title(f"IsoFLOP ({reference[0]} layers, {reference[1]} heads): final loss by size (dotted: N_opt)")
    if result.compute_optimal:
        left.legend(fontsize=7)
    c = np.array([o["flops"] for o in result.compute_optimal])
    n = np.array([o["n_opt"] for o in result.compute_optimal])
    edge = np.array([bool(o.get("at_edge")) for o in result.compute_optimal], dtype=bool)
    right.scatter(c[~edge], n[~edge], color="k", zorder=3, label="N_opt")
    right.scatter(c[edge], n[edge], color="k", marker="^", zorder=3, label="best run at the grid's edge (a bound)")
    if len(n):
        right.set_ylim(n.min() / 3, n.max() * 3)
    if result.n_opt_exponent and len(c) >= 2:
        e = result.n_opt_exponent
        k = np.exp(np.mean(np.log(n) - e["alpha"] * np.log(c)))
        grid = np.geomspace(c.min(), c.max(), 20)
        interval = f" [{e['alpha_lo']:.2f}, {e['alpha_hi']:.2f}]" if "alpha_lo" in e else ""
        right.plot(grid, k * grid ** e["alpha"], "r--", label=f"N_opt ∝ C^{e['alpha']:.2f}{interval}")
    if len(n):
        right.legend(fontsize=7)
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("training FLOPs")
    right.set_ylabel("compute-optimal N")
    right.set_title("Compute-optimal size")


def write_plots(curves: list[RunCurve], result: ScalingResult, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, draw, size in (
        ("loss_vs_flops.png", lambda fig: plot_loss_vs_flops(curves, result, fig.subplots()), (8, 5.5)),
        ("loss_by_depth.png", lambda fig: plot_by_axis(curves, "n_layers", fig.subplots()), (6, 4.5)),
        ("loss_by_heads.png", lambda fig: plot_by_axis(curves, "n_heads", fig.subplots()), (6, 4.5)),
        ("isoflop.png", lambda fig: plot_isoflop(curves, result, fig.subplots(1, 2)), (11, 4.5)),
    ):
        fig = plt.figure(figsize=size)
        draw(fig)
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=120)
        plt.close(fig)
        paths.append(out_dir / name)
    return paths
