"""Scaling analysis of a sweep (Eldan & Li 2023, Figs. 23–24): frontier, power-law fit, compute-optimal size.

Reads the finished runs of a scaling sweep (``tinyinterp sweep run``; each run's ``metrics.jsonl`` carries
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

The figure script ``python -m analyses.scaling SWEEP`` and the app's Scaling page both use this module;
plots are in :mod:`tinyinterp.scaling.plots`.

    >>> result, curves = analyze("runs/scaling-tiny", n_bootstrap=200)
    >>> print(describe(result))
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tinyinterp.io.atomic import atomic_write_json
from tinyinterp.errors import TinyinterpError
from tinyinterp.runs.layout import ANALYSIS_DIR, METRICS_FILE, SCALING_SUBDIR
from tinyinterp.scaling.summary import SCALING, read_sweep_summary

OUT_SUBDIR = Path(ANALYSIS_DIR) / SCALING_SUBDIR
"""Where a sweep's saved analysis lives, relative to the sweep folder (``runlayout.scaling_dir``)."""
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
        path = Path(out_dir) / RESULT_FILE
        try:
            return cls(**json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError) as e:
            raise TinyinterpError(f"{path}: unreadable scaling result ({type(e).__name__}); rerun `python -m analyses.scaling`") from None

    def power_law(self) -> PowerLaw | None:
        return PowerLaw(self.fit["a"], self.fit["b"], self.fit["c"]) if self.fit else None


# ----- loading --------------------------------------------------------------------------------------


def load_curves(sweep_dir: Path) -> list[RunCurve]:
    """Every finished run of the sweep with its validation curve (runs from ``sweep_summary.json``)."""
    from tinyinterp.io.jsonl import read_jsonl

    sweep_dir = Path(sweep_dir)
    summary = read_sweep_summary(sweep_dir, SCALING)
    curves = []
    for r in summary["runs"]:
        metrics = sweep_dir / r["name"] / METRICS_FILE
        records = [m for m in read_jsonl(metrics) if "val_loss" in m]
        if not records:
            continue
        try:
            curves.append(RunCurve(
                name=r["name"], d_model=r["d_model"], n_layers=r["n_layers"], n_heads=r["n_heads"], lr=r["lr"], seed=r["seed"],
                budget_kind=r["budget_kind"], budget=r["budget"], n_params=r["n_params"], n_matmul=r["n_matmul"],
                train_tokens=r.get("train_tokens"), tokens=[m["tokens"] for m in records],
                flops=[m.get("flops", m["tokens"] * r["flops_per_token"]) for m in records],
                val_loss=[m["val_loss"] for m in records],
            ))
        except KeyError as e:
            raise TinyinterpError(f"{metrics}: record without {e} (or its summary entry lacks it); rerun `tinyinterp sweep summarize`") from None
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
    reference = reference_shape(curves) if curves else None
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


def reference_shape(curves: list[RunCurve]) -> tuple[int, int]:
    """The most common (n_layers, n_heads) of ``curves`` (anything with those attributes): the width series' shape."""
    return Counter((c.n_layers, c.n_heads) for c in curves).most_common(1)[0][0]


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
