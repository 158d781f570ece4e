"""Story quality across a scaling sweep: the paper's grammar/creativity/consistency vs. size, depth and heads.

    python -m analyses.scaling runs/scaling-tiny --quality                                   # no-LLM metrics + probes
    python -m analyses.scaling runs/scaling-tiny --quality --base-url http://127.0.0.1:8000/v1  # LLM judge grades
    python -m analyses.scaling_quality runs/scaling-tiny --max-prompts 8 --n 3                 # quality only

For every finished run of a sweep (a run directory with final weights) this runs the project's evaluation
(:mod:`tinyinterp.evaluation.pipeline`): completions of the first ``max_prompts`` evaluation prompts under the
completion tag ``scaling`` (so a run's own ``tinyinterp eval`` files are left alone), their no-LLM metrics,
the probes, and — when a judge is configured (``base_url``; key from ``$OPENAI_API_KEY``) — the paper's
two-turn LLM grades. Each run's result is cached in ``<run>/analysis/eval/scaling_quality.json`` keyed by the
weights' hash and the settings: a rerun re-uses it and asks nothing again (and the grader's own cache in
``grades.jsonl`` means an interrupted rerun re-grades only what is missing).

Writes ``quality.json`` (per-run table + the three series), ``quality.md`` (the table) and
``quality_vs_params.png``, ``quality_by_depth.png``, ``quality_by_heads.png`` beside ``scaling.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tinyinterp.runs import rundir
from tinyinterp.io.atomic import atomic_write_json
from tinyinterp.cli.support import run_cli
from tinyinterp.errors import TinyinterpError
from tinyinterp.io.jsonl import read_jsonl
from tinyinterp.runs.layout import SWEEP_SUMMARY_FILE, WEIGHTS_FILE
from tinyinterp.scaling.analysis import OUT_SUBDIR, reference_shape
from tinyinterp.scaling.summary import SCALING, read_sweep_summary

log = logging.getLogger(__name__)

QUALITY_FILE = "quality.json"
TABLE_FILE = "quality.md"
RUN_CACHE_FILE = "scaling_quality.json"
"""Per run, in ``<run>/analysis/eval/``: the cached result with the key it was computed under."""
COMPLETION_TAG = "scaling"
JUDGE_METRICS = ("grammar", "creativity", "consistency", "plot")
NO_LLM_METRICS = ("probe_accuracy", "distinct_2", "mean_type_token_ratio", "finishes_cut_sentence_rate", "mean_words")
"""Shown without a judge: probe accuracy (knowledge/reasoning/context), diversity, finishing a cut sentence."""
PLOTS = (("n_params", "quality_vs_params.png"), ("n_layers", "quality_by_depth.png"), ("n_heads", "quality_by_heads.png"))


@dataclass
class QualityConfig:
    """How each run is evaluated. Cheap by default: 4 prompts × 2 completions of ≤ 80 tokens."""

    max_prompts: int = 4
    n: int = 2
    max_new_tokens: int = 80
    temperature: float = 1.0
    seed: int = 0
    prompts_file: Path | None = None
    base_url: str | None = None
    """OpenAI-compatible judge; None = no LLM (no-LLM metrics and probes only)."""
    grader_model: str | None = None
    max_concurrency: int = 8
    timeout_s: float = 60.0
    max_retries: int = 6
    probes: bool = True

    def __post_init__(self) -> None:
        for name in ("max_prompts", "n", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise TinyinterpError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")

    @property
    def judged(self) -> bool:
        return self.base_url is not None


@dataclass
class QualityRow:
    """One run's shape and its quality numbers (``metrics``: name → value or None)."""

    name: str
    d_model: int
    n_layers: int
    n_heads: int
    n_params: int
    budget_kind: str
    budget: float
    metrics: dict[str, float | None] = field(default_factory=dict)
    cached: bool = False


# ----- one run ---------------------------------------------------------------------------------------


def _client(cfg: QualityConfig):
    from tinyinterp.llm import LLMClient, LLMConfig

    return LLMClient(LLMConfig(base_url=cfg.base_url, model=cfg.grader_model, max_concurrency=cfg.max_concurrency,
                               timeout_s=cfg.timeout_s, max_retries=cfg.max_retries))


def _cache_key(run_dir: Path, cfg: QualityConfig, prompts, grader_model: str | None) -> dict:
    """What the result depends on: the weights, the prompts and every sampling/judging setting."""
    from tinyinterp.evaluation.completions import file_hash

    prompt_digest = hashlib.sha256("\x00".join(f"{p.id}\x01{p.text}" for p in prompts).encode()).hexdigest()[:16]
    return {"model_hash": file_hash(run_dir / rundir.WEIGHTS_FILE), "prompts": prompt_digest, "n": cfg.n,
            "max_new_tokens": cfg.max_new_tokens, "temperature": cfg.temperature, "seed": cfg.seed,
            "probes": cfg.probes, "grader_model": grader_model}


def evaluate_run(run_dir: Path, cfg: QualityConfig, prompts, grader=None, progress: bool = False) -> tuple[dict, bool]:
    """Quality numbers of one run (cached); returns (metrics, came_from_cache)."""
    from tinyinterp.evaluation import pipeline
    from tinyinterp.runs.checkpoints import Checkpoint
    from tinyinterp.evaluation.completions import CompletionConfig, completions_path, eval_dir
    from tinyinterp.evaluation.grading import GRADES_FILE, summarize
    from tinyinterp.evaluation.metrics import set_stats
    from tinyinterp.models.generation import SamplingConfig

    run_dir = Path(run_dir)
    key = _cache_key(run_dir, cfg, prompts, grader.client.model if grader is not None else None)
    cache_path = eval_dir(run_dir) / RUN_CACHE_FILE
    if cache_path.is_file():
        cached = rundir.read_json(cache_path)
        if cached.get("key") == key:
            return cached["metrics"], True
    ccfg = CompletionConfig(n=cfg.n, seed=cfg.seed,
                            sampling=SamplingConfig(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature))
    checkpoint = Checkpoint(tag=COMPLETION_TAG, weights=run_dir / rundir.WEIGHTS_FILE)
    # A file from other settings (or older weights) cannot be resumed; it is this module's own file: start afresh.
    path = completions_path(run_dir, COMPLETION_TAG)
    first = read_jsonl(path)[:1] if path.is_file() else []
    if first and (first[0].get("model_hash") != key["model_hash"] or first[0].get("settings") != ccfg.to_dict()):
        path.unlink()
    cs = pipeline.complete(run_dir, prompts, ccfg, checkpoint, progress=progress)
    wanted = {p.id for p in prompts}
    records = [r for r in cs.records if r["prompt_id"] in wanted and r["sample"] < cfg.n]
    stats = set_stats(records)  # over exactly these records: the file may also hold other prompts from earlier runs
    metrics: dict[str, Any] = {k: stats.get(k) for k in NO_LLM_METRICS if k in stats}
    if cfg.probes:
        metrics["probe_accuracy"] = pipeline.probes(run_dir, progress=progress)["accuracy"]
    if grader is not None:
        results = grader.grade(records, out_path=eval_dir(run_dir) / GRADES_FILE, progress=progress)
        summary = summarize(results)[COMPLETION_TAG]
        metrics.update({s: summary["scores"][s]["mean"] for s in JUDGE_METRICS})
        metrics.update({f"{s}_ci": [summary["scores"][s]["ci_low"], summary["scores"][s]["ci_high"]]
                        for s in JUDGE_METRICS if summary["scores"][s]["mean"] is not None})
        metrics.update(n_graded=summary["n_ok"], n_unparseable=summary["n_unparseable"], n_error=summary["n_error"],
                       mean_age_index=summary["mean_age_index"])
        if summary["n_error"]:  # a server failure is not a result: leave it uncached so a rerun retries it
            log.warning("%s: %d completions not graded (server errors); not cached", run_dir.name, summary["n_error"])
            return metrics, False
    atomic_write_json(cache_path, {"key": key, "metrics": metrics})
    return metrics, False


# ----- a sweep ---------------------------------------------------------------------------------------


def sweep_runs(sweep_dir: Path) -> list[dict]:
    """The finished runs of a sweep that have final weights (from ``sweep_summary.json``, else summarized)."""
    sweep_dir = Path(sweep_dir)
    if sweep_dir.is_dir() and not (sweep_dir / SWEEP_SUMMARY_FILE).is_file():
        from training.scaling_sweep import summarize

        summarize(sweep_dir)
    summary = read_sweep_summary(sweep_dir, SCALING)
    runs = [r for r in summary["runs"] if (sweep_dir / r["name"] / WEIGHTS_FILE).is_file()]
    if not runs:
        raise TinyinterpError(f"{sweep_dir}: no finished run has final weights ({WEIGHTS_FILE}) to evaluate")
    return runs


def evaluate_sweep(sweep_dir: Path, cfg: QualityConfig, progress: bool = False) -> list[QualityRow]:
    """Evaluate every finished run (cached per run); one row per run."""
    from tinyinterp.evaluation.prompts import load_prompts

    prompts = load_prompts(cfg.prompts_file)[: cfg.max_prompts]
    grader = None
    if cfg.judged:
        from tinyinterp.evaluation.grading import Grader

        grader = Grader(_client(cfg))
    runs = sweep_runs(sweep_dir)
    iterator = runs
    if progress:
        from tqdm import tqdm
        iterator = tqdm(runs, desc="quality", unit="run")
    rows = []
    for r in iterator:
        metrics, cached = evaluate_run(Path(sweep_dir) / r["name"], cfg, prompts, grader)
        rows.append(QualityRow(r["name"], r["d_model"], r["n_layers"], r["n_heads"], r["n_params"], r["budget_kind"],
                               r["budget"], metrics, cached))
    return rows


def _series(rows: list[QualityRow], axis: str) -> dict[str, Any]:
    """Rows that vary ``axis`` with the rest fixed, as in the loss plots of :mod:`analyses.scaling`.

    n_params: the width series (most common depth and heads); n_layers / n_heads: at the width where that
    axis takes the most values, the other one at its most common value.
    """
    layers, heads = reference_shape(rows)
    if axis == "n_params":
        pool, fixed = [r for r in rows if (r.n_layers, r.n_heads) == (layers, heads)], {"n_layers": layers, "n_heads": heads}
    else:
        other, ref = ("n_heads", heads) if axis == "n_layers" else ("n_layers", layers)
        pool = [r for r in rows if getattr(r, other) == ref]
        widths = Counter({w: len({getattr(r, axis) for r in pool if r.d_model == w}) for w in {r.d_model for r in pool}})
        width = widths.most_common(1)[0][0] if widths else None
        pool, fixed = [r for r in pool if r.d_model == width], {other: ref, "d_model": width}
    points = sorted(({"run": r.name, "x": getattr(r, axis), "budget": r.budget, **r.metrics} for r in pool),
                    key=lambda p: (p["budget"], p["x"]))
    return {"axis": axis, "fixed": fixed, "varies": len({p["x"] for p in points}) >= 2, "points": points}


def metric_names(cfg: QualityConfig) -> tuple[str, ...]:
    return JUDGE_METRICS[:3] + NO_LLM_METRICS[:1] if cfg.judged else NO_LLM_METRICS


def analyze_quality(sweep_dir: Path, cfg: QualityConfig, progress: bool = False) -> dict[str, Any]:
    rows = evaluate_sweep(sweep_dir, cfg, progress=progress)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
    return {"judged": cfg.judged, "metrics": list(metric_names(cfg)), "settings": settings,
            "runs": [asdict(r) for r in rows], "series": {axis: _series(rows, axis) for axis, _ in PLOTS}}


# ----- outputs ---------------------------------------------------------------------------------------


def _fmt(v) -> str:
    return "—" if v is None else f"{v:.3g}" if isinstance(v, float) else str(v)


def table(quality: dict[str, Any]) -> str:
    """Markdown table, one row per run, ordered by depth, heads, width (the paper's tables by size and depth)."""
    names = quality["metrics"]
    rows = sorted(quality["runs"], key=lambda r: (r["budget"], r["n_layers"], r["n_heads"], r["d_model"]))
    lines = ["| run | d_model | layers | heads | params | " + " | ".join(names) + " |",
             "|---" * (5 + len(names)) + "|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['d_model']} | {r['n_layers']} | {r['n_heads']} | {r['n_params']:,} | "
                     + " | ".join(_fmt(r["metrics"].get(m)) for m in names) + " |")
    return "\n".join(lines)


def write_plots(quality: dict[str, Any], out_dir: Path) -> list[Path]:
    """One figure per series (size, depth, heads), one panel per metric, one line per budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, paths = quality["metrics"], []
    for axis, filename in PLOTS:
        s = quality["series"][axis]
        fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.2), squeeze=False)
        for ax, metric in zip(axes[0], names):
            for budget in sorted({p["budget"] for p in s["points"]}):
                pts = [p for p in s["points"] if p["budget"] == budget and p.get(metric) is not None]
                ax.plot([p["x"] for p in pts], [p[metric] for p in pts], "o-", ms=4, lw=1, label=f"budget {budget:.3g}")
            if axis == "n_params":
                ax.set_xscale("log")
            ax.set_xlabel({"n_params": "parameters", "n_layers": "layers", "n_heads": "attention heads"}[axis])
            ax.set_title(metric, fontsize=9)
        fixed = ", ".join(f"{k.replace('n_', '')} {v}" for k, v in s["fixed"].items())
        note = "" if s["varies"] else " (no variation in this grid)"
        what = "LLM grades" if quality["judged"] else "no-LLM metrics"
        fig.suptitle(f"{what} vs {axis.replace('n_', '')} ({fixed}){note}", fontsize=10)
        axes[0][0].legend(fontsize=6)
        fig.tight_layout()
        fig.savefig(out_dir / filename, dpi=110)
        plt.close(fig)
        paths.append(out_dir / filename)
    return paths


def run(sweep_dir: Path, out_dir: Path, cfg: QualityConfig, progress: bool = False) -> tuple[dict, list[Path]]:
    """Evaluate, then write quality.json, quality.md and the plots into ``out_dir``."""
    quality = analyze_quality(sweep_dir, cfg, progress=progress)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / QUALITY_FILE, quality)
    from tinyinterp.io.atomic import atomic_write_text

    atomic_write_text(out_dir / TABLE_FILE, table(quality) + "\n")
    return quality, [out_dir / QUALITY_FILE, out_dir / TABLE_FILE, *write_plots(quality, out_dir)]


# ----- CLI -------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The quality options, shared by ``python -m analyses.scaling --quality`` and this module's CLI."""
    d = QualityConfig()
    g = parser.add_argument_group("story quality (with --quality)")
    g.add_argument("--base-url", default=None,
                   help="OpenAI-compatible LLM judge ending in /v1 (key: $OPENAI_API_KEY; implies --quality); "
                        "without it: no-LLM metrics and probes")
    g.add_argument("--grader-model", default=None, help="judge model (default $TINYINTERP_LLM_MODEL or gpt-4o-mini)")
    g.add_argument("--max-prompts", type=int, default=d.max_prompts,
                   help=f"evaluation prompts per run (default {d.max_prompts})")
    g.add_argument("--n", type=int, default=d.n, help=f"completions per prompt (default {d.n})")
    g.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens,
                   help=f"tokens per completion at most (default {d.max_new_tokens})")
    g.add_argument("--prompts", type=Path, default=None, help="prompt file (default: the paper's evaluation prompts)")
    g.add_argument("--no-probes", action="store_true", help="skip the probes")


def config_from_args(args: argparse.Namespace) -> QualityConfig:
    return QualityConfig(max_prompts=args.max_prompts, n=args.n, max_new_tokens=args.max_new_tokens,
                         prompts_file=args.prompts, base_url=args.base_url, grader_model=args.grader_model,
                         probes=not args.no_probes)


def describe(quality: dict[str, Any]) -> str:
    cached = sum(r["cached"] for r in quality["runs"])
    head = (f"story quality of {len(quality['runs'])} runs ({cached} from cache; "
            f"{'LLM judge' if quality['judged'] else 'no LLM: metrics and probes'}):")
    return head + "\n" + table(quality)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analyses.scaling_quality", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", type=Path, help="sweep folder of `tinyinterp sweep run`")
    parser.add_argument("--out", type=Path, help=f"output folder (default: SWEEP/{OUT_SUBDIR})")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run_cli(lambda: _run_and_describe(args, args.out or args.sweep / OUT_SUBDIR))


def _run_and_describe(args: argparse.Namespace, out: Path) -> int:
    quality, paths = run(args.sweep, out, config_from_args(args), progress=not args.no_progress)
    print(describe(quality))
    print(f"wrote {', '.join(p.name for p in paths)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
