"""Scaling analysis of a sweep (Eldan & Li 2023, Figs. 23–24): frontier, power-law fit, compute-optimal size.

    python -m analyses.scaling runs/scaling-tiny            # writes runs/scaling-tiny/analysis/scaling/
    python -m analyses.scaling runs/scaling-tiny --bootstrap 500 --out figures/

Reads the finished runs of a ``training.sweep run`` folder (each run's ``metrics.jsonl`` carries
``tokens``, ``flops`` and ``val_loss`` at every evaluation) and computes:

* the **loss-vs-FLOPs frontier**: the lowest validation loss reached by any run at or below each compute
  (each run's first 20% of tokens left out: the initial transient);
* the **power law** ``L(C) = a * C^(-b) + c`` fitted to the frontier (least squares in log L), with a
  percentile interval from a **bootstrap over runs** (resample runs with replacement, rebuild the
  frontier, refit);
* the **compute-optimal parameter count** ``N_opt(C)``: per FLOPs budget (IsoFLOP, over the width series),
  the vertex of a parabola of final loss in log N (the best run when there is no vertex inside the grid), and
  ``N_opt ∝ C^alpha`` fitted across budgets (bootstrapped the same way). N is ``n_matmul``, the weights
  in the FLOPs formula of ``training/scaling_flops.py`` (so C ≈ 6·N·D).

Plots (PNG, beside ``scaling.json``): loss vs FLOPs coloured by width with the frontier and the fit;
final loss by depth and by heads at a fixed width; the IsoFLOP curves and N_opt(C). Every point past one
epoch of the training corpus (the shared corpus is ~0.6M tokens) is drawn hollow: it repeats data.
With ``--quality``, :mod:`analyses.scaling_quality` also evaluates each run's stories (LLM grades of
grammar/creativity/consistency with ``--base-url``, otherwise no-LLM metrics and probes) vs. size, depth, heads.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tinyinterp import rundir
from tinyinterp.atomic import atomic_write_json
from tinyinterp.cli_support import run_cli
from tinyinterp.errors import TinyinterpError
from tinyinterp.jsonl import read_jsonl

OUT_SUBDIR = Path("analysis") / "scaling"
RESULT_FILE = "scaling.json"
C_UNIT = 1e12
"""Compute is fitted in units of 1e12 FLOPs so that a is a loss, not a huge number."""
SKIP_FRACTION = 0.2
"""Curve points in the first 20% of each run's tokens stay off the frontier (initial transient)."""


@dataclass
class RunCurve:
    """One finished run: its shape, budget, size and validation curve."""

    name: str
    d_model: int
    n_layers: int
    n_heads: int
    lr: float
    seed: int
    budget_kind: str
    budget: float
    n_params: int
    n_matmul: int
    train_tokens: int | None
    tokens: list[int]
    flops: list[float]
    val_loss: list[float]

    @property
    def final_loss(self) -> float:
        return self.val_loss[-1]

    def epochs(self) -> np.ndarray:
        """Passes over the training corpus at each curve point (> 1 means the run repeats data)."""
        return np.asarray(self.tokens, dtype=float) / self.train_tokens if self.train_tokens else np.zeros(len(self.tokens))


@dataclass
class PowerLaw:
    a: float
    """Coefficient for C in units of ``C_UNIT`` FLOPs."""
    b: float
    c: float

    def __call__(self, flops) -> np.ndarray:
        return self.a * (np.asarray(flops, dtype=float) / C_UNIT) ** (-self.b) + self.c


@dataclass
class ScalingResult:
    runs: list[str]
    frontier: list[dict[str, Any]]
    """Points (flops, loss, run, epochs) of the lower envelope, by increasing compute."""
    fit: dict[str, float] | None
    """a, b, c of L(C) = a (C/1e12)^-b + c; with b_lo, b_hi, c_lo, c_hi (bootstrap percentiles)."""
    compute_optimal: list[dict[str, Any]] = field(default_factory=list)
    """Per FLOPs budget: flops, n_opt, method ('parabola' or 'best run'), best_run, at_edge (best = smallest/largest N)."""
    n_opt_exponent: dict[str, float] | None = None
    """alpha of N_opt ∝ C^alpha with alpha_lo, alpha_hi (bootstrap percentiles)."""
    repeated_runs: list[str] = field(default_factory=list)
    """Runs that trained for more than one epoch of the corpus."""
    n_bootstrap: int = 0

    def save(self, out_dir: Path) -> Path:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / RESULT_FILE
        atomic_write_json(path, asdict(self))
        return path

    @classmethod
    def load(cls, out_dir: Path) -> "ScalingResult":
        return cls(**rundir.read_json(Path(out_dir) / RESULT_FILE))

    def power_law(self) -> PowerLaw | None:
        return PowerLaw(self.fit["a"], self.fit["b"], self.fit["c"]) if self.fit else None


# ----- loading --------------------------------------------------------------------------------------


def load_curves(sweep_dir: Path) -> list[RunCurve]:
    """Every finished run of the sweep with its validation curve (from ``sweep_summary.json``)."""
    from training.scaling_sweep import SUMMARY_FILE, summarize

    sweep_dir = Path(sweep_dir)
    summary_path = sweep_dir / SUMMARY_FILE
    summary = rundir.read_json(summary_path) if summary_path.is_file() else summarize(sweep_dir)
    if summary.get("kind") != "scaling":
        raise TinyinterpError(f"{summary_path}: not a scaling sweep; run `python -m training.sweep summarize {sweep_dir}`")
    curves = []
    for r in summary["runs"]:
        records = [m for m in read_jsonl(sweep_dir / r["name"] / rundir.METRICS_FILE) if "val_loss" in m]
        if not records:
            continue
        curves.append(RunCurve(
            name=r["name"], d_model=r["d_model"], n_layers=r["n_layers"], n_heads=r["n_heads"], lr=r["lr"], seed=r["seed"],
            budget_kind=r["budget_kind"], budget=r["budget"], n_params=r["n_params"], n_matmul=r["n_matmul"],
            train_tokens=r.get("train_tokens"), tokens=[m["tokens"] for m in records],
            flops=[m.get("flops", m["tokens"] * r["flops_per_token"]) for m in records],
            val_loss=[m["val_loss"] for m in records],
        ))
    if not curves:
        raise TinyinterpError(f"{sweep_dir}: no finished scaling runs with validation losses yet")
    return curves


# ----- frontier and fits ----------------------------------------------------------------------------


def frontier(curves: list[RunCurve], skip_fraction: float = SKIP_FRACTION) -> list[dict[str, Any]]:
    """Lower envelope of the (flops, val loss) points: kept when it beats every point of no more compute.

    Points in the first ``skip_fraction`` of a run's tokens are left out: there the loss still falls from its
    initial value through warm-up, a transient no power law in compute describes.
    """
    points = sorted((f, l, c.name, float(e)) for c in curves
                    for t, f, l, e in zip(c.tokens, c.flops, c.val_loss, c.epochs()) if t >= skip_fraction * c.tokens[-1])
    out, best = [], float("inf")
    for f, l, name, epochs in points:
        if l < best:
            best = l
            out.append({"flops": f, "loss": l, "run": name, "epochs": epochs})
    return out


def fit_power_law(flops, loss) -> PowerLaw:
    """Least squares of log L against log(a x^-b + c), x = C / C_UNIT: c profiled on a grid, then refined."""
    x, y = np.asarray(flops, dtype=float) / C_UNIT, np.asarray(loss, dtype=float)
    if len(x) < 3:
        raise TinyinterpError(f"power-law fit: need at least 3 frontier points, got {len(x)}; train more runs or evals")
    lx, ly = np.log(x), np.log(y)

    def given_c(c: float) -> tuple[float, PowerLaw]:
        slope, intercept = np.polyfit(lx, np.log(y - c), 1)  # log(L - c) = log a - b log x
        law = PowerLaw(float(np.exp(intercept)), float(-slope), float(c))
        pred = law(x * C_UNIT)
        return (float(np.sum((np.log(np.maximum(pred, 1e-12)) - ly) ** 2)), law)

    grid = np.linspace(0.0, y.min() * 0.999, 400)
    sse, law = min((given_c(c) for c in grid), key=lambda t: t[0])
    try:
        from scipy.optimize import least_squares

        res = least_squares(lambda p: np.log(np.maximum(np.exp(p[0]) * x ** (-p[1]) + p[2], 1e-12)) - ly,
                            [np.log(law.a), law.b, law.c], bounds=([-np.inf, -np.inf, 0.0], [np.inf, np.inf, y.min()]))
        if res.success and 2 * res.cost <= sse:
            law = PowerLaw(float(np.exp(res.x[0])), float(res.x[1]), float(res.x[2]))
    except ImportError:  # scipy is optional: the grid fit stands
        pass
    return law


def compute_optimal(curves: list[RunCurve]) -> list[dict[str, Any]]:
    """Per FLOPs budget: N_opt from a parabola of final loss in log N (IsoFLOP), or the best run.

    Only the width series (the most common depth and heads) enters, so that N varies along one family of shapes.
    """
    by_budget: dict[float, list[RunCurve]] = {}
    reference = _reference_shape(curves) if curves else None
    for c in curves:
        if c.budget_kind == "flops" and (c.n_layers, c.n_heads) == reference:
            by_budget.setdefault(c.budget, []).append(c)
    out = []
    for budget, group in sorted(by_budget.items()):
        best = min(group, key=lambda c: c.final_loss)
        logn = np.log([c.n_matmul for c in group])
        losses = np.array([c.final_loss for c in group])
        sizes = [c.n_matmul for c in group]
        entry = {"flops": budget, "n_opt": float(best.n_matmul), "method": "best run", "best_run": best.name,
                 "n_runs": len(group), "at_edge": best.n_matmul in (min(sizes), max(sizes))}
        if len(set(logn)) >= 3:
            k2, k1, _ = np.polyfit(logn, losses, 2)
            vertex = -k1 / (2 * k2) if k2 > 0 else None
            if vertex is not None and logn.min() <= vertex <= logn.max():  # no extrapolation past the grid
                entry.update(n_opt=float(np.exp(vertex)), method="parabola", at_edge=False)
        out.append(entry)
    return out


def fit_exponent(optimal: list[dict[str, Any]]) -> float | None:
    """alpha of N_opt ∝ C^alpha (least squares in log-log); None with fewer than two budgets."""
    if len(optimal) < 2:
        return None
    slope, _ = np.polyfit(np.log([o["flops"] for o in optimal]), np.log([o["n_opt"] for o in optimal]), 1)
    return float(slope)


def analyze(sweep_dir: Path, n_bootstrap: int = 200, seed: int = 0) -> tuple[ScalingResult, list[RunCurve]]:
    """Frontier, L(C) fit and N_opt(C) of a sweep, with bootstrap-over-runs intervals."""
    curves = load_curves(sweep_dir)
    front = frontier(curves)
    law = fit_power_law([p["flops"] for p in front], [p["loss"] for p in front]) if len(front) >= 3 else None
    optimal = compute_optimal(curves)
    alpha = fit_exponent(optimal)
    rng = np.random.default_rng(seed)
    boot_b, boot_c, boot_alpha = [], [], []
    for _ in range(n_bootstrap):
        sample = [curves[i] for i in rng.integers(0, len(curves), len(curves))]
        f = frontier(sample)
        if law is not None and len(f) >= 3:
            boot_law = fit_power_law([p["flops"] for p in f], [p["loss"] for p in f])
            boot_b.append(boot_law.b)
            boot_c.append(boot_law.c)
        a = fit_exponent(compute_optimal(sample)) if alpha is not None else None
        if a is not None:
            boot_alpha.append(a)
    fit = None
    if law is not None:
        fit = {"a": law.a, "b": law.b, "c": law.c, "c_unit_flops": C_UNIT}
        if boot_b:
            fit.update(b_lo=float(np.percentile(boot_b, 2.5)), b_hi=float(np.percentile(boot_b, 97.5)),
                       c_lo=float(np.percentile(boot_c, 2.5)), c_hi=float(np.percentile(boot_c, 97.5)), n_boot=len(boot_b))
    exponent = None
    if alpha is not None:
        exponent = {"alpha": alpha}
        if boot_alpha:
            exponent.update(alpha_lo=float(np.percentile(boot_alpha, 2.5)), alpha_hi=float(np.percentile(boot_alpha, 97.5)),
                            n_boot=len(boot_alpha))
    repeated = [c.name for c in curves if c.epochs()[-1] > 1]
    result = ScalingResult([c.name for c in curves], front, fit, optimal, exponent, repeated, n_bootstrap)
    return result, curves


# ----- plots ----------------------------------------------------------------------------------------


def _reference_shape(curves: list[RunCurve]) -> tuple[int, int]:
    """The most common (n_layers, n_heads): the depth and heads of the width series."""
    return Counter((c.n_layers, c.n_heads) for c in curves).most_common(1)[0][0]


def _mark(ax, x, y, epochs, color, **kw) -> None:
    """Filled markers for points within one epoch of the corpus, hollow ones for points that repeat data."""
    x, y, repeat = np.asarray(x), np.asarray(y), np.asarray(epochs) > 1
    ax.scatter(x[~repeat], y[~repeat], color=color, s=14, zorder=3, **kw)
    ax.scatter(x[repeat], y[repeat], facecolors="none", edgecolors=color, s=22, zorder=3)


def plot_loss_vs_flops(curves: list[RunCurve], result: ScalingResult, ax) -> None:
    """Each run's validation curve against compute, coloured by width; the frontier and the fitted power law."""
    import matplotlib.pyplot as plt

    layers, heads = _reference_shape(curves)
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
    layers, heads = _reference_shape(curves)
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
    reference = _reference_shape(curves)
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


def describe(result: ScalingResult) -> str:
    """A few lines for the terminal / a report."""
    lines = [f"{len(result.runs)} runs, {len(result.frontier)} frontier points, {result.n_bootstrap} bootstrap resamples"]
    if result.fit:
        f = result.fit
        interval = f" (95% bootstrap interval [{f['b_lo']:.3f}, {f['b_hi']:.3f}])" if "b_lo" in f else ""
        lines.append(f"L(C) = {f['a']:.3f} * (C / 1e12 FLOPs)^-{f['b']:.3f} + {f['c']:.3f}: exponent b = {f['b']:.3f}{interval}")
    for o in result.compute_optimal:
        lines.append(f"C = {o['flops']:.3g} FLOPs: N_opt = {o['n_opt']:.3g} matmul params ({o['method']}; best run {o['best_run']})")
    if result.n_opt_exponent:
        e = result.n_opt_exponent
        interval = f" (95% bootstrap interval [{e['alpha_lo']:.2f}, {e['alpha_hi']:.2f}])" if "alpha_lo" in e else ""
        lines.append(f"N_opt ∝ C^{e['alpha']:.2f}{interval}")
    edge = [o for o in result.compute_optimal if o.get("at_edge")]
    if edge:
        lines.append(f"caution: N_opt is at the edge of the grid for {len(edge)} of {len(result.compute_optimal)} budgets "
                     "(the best run is the smallest or largest model): widen the grid there; the exponent is not identified")
    if result.repeated_runs:
        lines.append(f"{len(result.repeated_runs)} runs repeat data (> 1 epoch): {', '.join(result.repeated_runs)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analyses.scaling", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", type=Path, help="sweep folder of `python -m training.sweep run` (holds sweep_summary.json)")
    parser.add_argument("--out", type=Path, help=f"output folder (default: SWEEP/{OUT_SUBDIR})")
    parser.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples over runs (default 200; 0 = no intervals)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    parser.add_argument("--quality", action="store_true",
                        help="also evaluate each run's stories (analyses/scaling_quality.py; cached per run)")
    from analyses import scaling_quality

    scaling_quality.add_arguments(parser)
    args = parser.parse_args(argv)
    return run_cli(lambda: _analyze_and_plot(args, scaling_quality))


def _analyze_and_plot(args: argparse.Namespace, scaling_quality) -> int:
    if args.bootstrap < 0:
        raise TinyinterpError(f"--bootstrap must be >= 0, got {args.bootstrap}")
    result, curves = analyze(args.sweep, n_bootstrap=args.bootstrap, seed=args.seed)
    out = args.out or args.sweep / OUT_SUBDIR
    path = result.save(out)
    plots = write_plots(curves, result, out)
    quality = None
    if args.quality or args.base_url:  # a judge given is a quality analysis asked for
        quality, quality_paths = scaling_quality.run(args.sweep, out, scaling_quality.config_from_args(args), progress=True)
        plots += quality_paths
    print(describe(result))
    if quality is not None:
        print(scaling_quality.describe(quality))
    print(f"wrote {path} and {', '.join(p.name for p in plots)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
