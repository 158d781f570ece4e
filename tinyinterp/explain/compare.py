"""``tinyinterp explain-compare A B``: explanation scores per layer, two models side by side.

A and B are run directories (with ``analysis/explanations/``) or ``tinyinterp explain --out`` folders
(e.g. GPT-2's, explained on the same texts). Layers are matched by relative depth ``(layer + 0.5) / n_layers``
since the layer counts differ; each row is one layer of A and/or B at that depth. Writes
``score_compare.json`` and ``score_compare.png`` (score distribution per relative depth, both models)
next to A's explanations, or into ``--out``. Numbers are :func:`tinyinterp.explain.results.score_summary`'s.

Explaining another model on the same texts (GPT-2 is imported natively into our HookedTransformer;
GPT2_DIR is a local Hugging Face folder, or a hub name such as gpt2 already in the local HF cache)::

    tinyinterp analyze neurons RUN --corpus TEXTS
    tinyinterp explain RUN
    tinyinterp analyze neurons GPT2_DIR --corpus TEXTS --out CMP/gpt2/neurons
    tinyinterp explain GPT2_DIR --index CMP/gpt2/neurons          # -> CMP/gpt2/explanations
    tinyinterp explain-compare RUN CMP/gpt2/explanations          # -> RUN/analysis/explanations/score_compare.*

TEXTS is a text file or folder of documents: each model tokenizes it with its own tokenizer (pass the
same TEXTS to both; a tokenized corpus folder fits only the tokenizer it was made with). The same options
of ``tinyinterp explain`` (--layers/--neurons/--max-neurons, record counts, --explainer) should be used for
both sides; compare like with like (--explainer picks the slug, baseline by default).

Registered by the ``explain-compare`` entry of :mod:`tinyinterp.cli.commands`.
"""

from __future__ import annotations

import argparse
import io
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tinyinterp.cli.commands import EXPLAIN_COMPARE
from tinyinterp.errors import TinyinterpError
from tinyinterp.explain.results import load_explanations, results_folder, score_summary
from tinyinterp.io.atomic import atomic_write_bytes, atomic_write_json
from tinyinterp.runs.rundir import ANALYSIS_DIR, read_json

log = logging.getLogger(__name__)

OUT_STEM = "score_compare"
STATS = ("n", "mean", "median", "share_ge_0.5")
DEPTH_DECIMALS = 3  # layers of A and B share a row when their relative depths agree to this many decimals


@dataclass
class Side:
    """One model's explanations: where they are, its layer count and its per-layer summary."""

    label: str
    path: Path
    folder: Path
    n_layers: int
    n_layers_source: str  # "index" (the neuron index's meta.json) or "explained" (max explained layer + 1)
    index_meta: dict
    summary: pd.DataFrame  # score_summary rows of the chosen explainer, plus "depth"
    scores: pd.DataFrame  # layer, score (finished neurons with a score)
    overall: dict


def _index_meta(path: Path, folder: Path) -> dict:
    """The neuron index the explanations came from: RUN/analysis/neurons, or ``neurons/`` beside an --out folder."""
    for candidate in (path / ANALYSIS_DIR / "neurons", folder.parent / "neurons"):
        meta = candidate / "meta.json"
        if meta.is_file():
            data = read_json(meta)
            if isinstance(data, dict):
                return data
    return {}


def _overall(scores: pd.Series) -> dict:
    scores = scores.dropna()
    return {"n": int(len(scores)), "mean": float(scores.mean()) if len(scores) else math.nan,
            "median": float(scores.median()) if len(scores) else math.nan,
            "share_ge_0.5": float((scores >= 0.5).mean()) if len(scores) else math.nan}


def load_side(path: str | Path, explainer: str, label: str | None = None) -> Side:
    path = Path(path)
    folder = results_folder(path)
    if not path.exists():
        raise TinyinterpError(f"{path}: no such run directory or explanations folder")
    frame = load_explanations(path)
    if frame.empty:
        raise TinyinterpError(f"{path}: no explanations (looked in {folder}); run `tinyinterp explain` first")
    slugs = sorted(frame.explainer.unique())
    if explainer not in slugs:
        raise TinyinterpError(f"--explainer {explainer}: {path} has only {', '.join(slugs)}")
    summary = score_summary(path)
    summary = summary[summary.explainer == explainer].drop(columns="explainer").reset_index(drop=True)
    mine = frame[frame.explainer == explainer]
    scores = pd.DataFrame({"layer": mine.layer.astype(int), "score": pd.to_numeric(mine.score, errors="coerce")})
    meta = _index_meta(path, folder)
    max_layer = int(scores.layer.max())
    if isinstance(meta.get("n_layers"), int) and meta["n_layers"] > max_layer:
        n_layers, source = int(meta["n_layers"]), "index"
    else:
        n_layers, source = max_layer + 1, "explained"
        log.warning("%s: no neuron index beside the explanations; n_layers taken as %d (max explained layer + 1)",
                    path, n_layers)
    summary["depth"] = (summary.layer.astype(float) + 0.5) / n_layers
    if label is None:  # the run's folder name; for an --out folder, the model its index was built from
        label = path.resolve().name if folder != path else Path(str(meta.get("model") or "")).name
        label = label or path.resolve().parent.name
    return Side(label, path, folder, n_layers, source, meta, summary, scores, _overall(scores.score))


def side_by_side(a: Side, b: Side) -> pd.DataFrame:
    """One row per relative depth holding a layer of A and/or B; the other model's cells are empty there."""
    parts = []
    for tag, side in (("a", a), ("b", b)):
        part = side.summary[["depth", "layer", *STATS]].copy()
        part["key"] = part.depth.round(DEPTH_DECIMALS)
        parts.append(part.rename(columns={c: f"{tag}_{c}" for c in ("depth", "layer", *STATS)}))
    table = parts[0].merge(parts[1], on="key", how="outer").sort_values("key").reset_index(drop=True)
    return table.rename(columns={"key": "depth"}).drop(columns=["a_depth", "b_depth"])


def _cell(value, kind: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return str(int(value)) if kind in ("layer", "n") else f"{value:.3f}"


COLUMN_NAMES = {"layer": "layer", "n": "n", "mean": "mean", "median": "median", "share_ge_0.5": ">=0.5"}


def format_table(a: Side, b: Side, table: pd.DataFrame) -> str:
    """Two header lines (model label over its columns, then column names), a row per depth, then ``overall``."""
    cols = ("layer", *STATS)
    rows = [[f"{d:.3f}"] + [_cell(r[f"{t}_{c}"], c) for t in "ab" for c in cols]
            for d, (_, r) in zip(table.depth, table.iterrows())]
    rows.append(["overall"] + [_cell(v, c) for s in (a, b) for c, v in (("layer", None), *((k, s.overall[k]) for k in STATS))])
    names = ["depth"] + [COLUMN_NAMES[c] for _ in "ab" for c in cols]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(names)]
    group = len(cols)
    labels = [widths[0] * " "]
    for k, side in enumerate((a, b)):
        span = sum(widths[1 + k * group: 1 + (k + 1) * group]) + 2 * (group - 1)
        labels.append(f"{side.label} ({side.n_layers} layers)".center(span))
    lines = ["  ".join(labels).rstrip(), "  ".join(h.rjust(w) for h, w in zip(names, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


def _jsonable(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    return value.item() if hasattr(value, "item") else value


def _side_json(side: Side) -> dict:
    return {"label": side.label, "path": str(side.path), "explanations": str(side.folder),
            "n_layers": side.n_layers, "n_layers_source": side.n_layers_source,
            "index": {k: side.index_meta.get(k) for k in ("model", "n_tokens", "corpus", "tokenizer_fingerprint")},
            "overall": {k: _jsonable(v) for k, v in side.overall.items()},
            "layers": [{k: _jsonable(v) for k, v in row.items()} for row in side.summary.to_dict("records")]}


def plot(a: Side, b: Side) -> bytes:
    """Box plots of the scores per layer at its relative depth, A and B in two colours, means joined by lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.35 / max(a.n_layers, b.n_layers)
    for side, colour, shift in ((a, "tab:blue", -width / 1.8), (b, "tab:orange", width / 1.8)):
        layers = sorted(side.scores.layer.unique())
        data = [side.scores.score[side.scores.layer == layer].dropna().to_numpy() for layer in layers]
        depths = [(layer + 0.5) / side.n_layers + shift for layer in layers]
        keep = [i for i, d in enumerate(data) if len(d)]
        if keep:
            ax.boxplot([data[i] for i in keep], positions=[depths[i] for i in keep], widths=width,
                       patch_artist=True, manage_ticks=False, showfliers=False,
                       boxprops={"facecolor": colour, "alpha": 0.35}, medianprops={"color": colour})
            ax.plot([depths[i] for i in keep], [d.mean() for d in (data[i] for i in keep)], "o-", color=colour,
                    label=f"{side.label} ({side.n_layers} layers, n={side.overall['n']}, "
                          f"mean {side.overall['mean']:.2f})")
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.set_xlim(0, 1)
    ax.set_xlabel("relative depth (layer + 0.5) / n_layers")
    ax.set_ylabel("explanation score (correlation)")
    ax.set_title("explanation score per layer")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def compare(a_path, b_path, explainer: str = "baseline", out: Path | None = None,
            labels: tuple[str | None, str | None] = (None, None)) -> tuple[str, Path]:
    """Print-ready table and the folder the JSON + PNG were written to."""
    a, b = load_side(a_path, explainer, labels[0]), load_side(b_path, explainer, labels[1])
    if a.label == b.label:
        a.label, b.label = f"A:{a.label}", f"B:{b.label}"
    table = side_by_side(a, b)
    text = format_table(a, b, table)
    out = Path(out) if out is not None else a.folder
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / f"{OUT_STEM}.json", {
        "explainer": explainer, "a": _side_json(a), "b": _side_json(b),
        "rows": [{k: _jsonable(v) for k, v in row.items()} for row in table.to_dict("records")]})
    atomic_write_bytes(out / f"{OUT_STEM}.png", plot(a, b))
    return text, out


def add_subparser(subparsers) -> None:
    p = subparsers.add_parser(
        EXPLAIN_COMPARE.name, help=EXPLAIN_COMPARE.help,
        description=__doc__.split("Registered by")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)  # keeps the command lines on their own lines
    p.add_argument("a", help="run directory with analysis/explanations, or an `explain --out` folder")
    p.add_argument("b", help="the other model's: run directory or `explain --out` folder")
    p.add_argument("--explainer", default="baseline",
                   help="explainer slug to compare: baseline (default) or llm-<model>")
    p.add_argument("--labels", default=None, help="A,B: names in the table and plot (default: model names)")
    p.add_argument("--out", type=Path, default=None,
                   help=f"folder for {OUT_STEM}.json/.png (default: A's explanations folder)")
    p.set_defaults(func=run_compare)


def run_compare(args) -> int:
    labels = (None, None)
    if args.labels is not None:
        parts = args.labels.split(",")
        if len(parts) != 2 or not all(p.strip() for p in parts):
            raise TinyinterpError(f"--labels {args.labels!r}: expected two names, A,B")
        labels = (parts[0].strip(), parts[1].strip())
    text, out = compare(args.a, args.b, args.explainer, args.out, labels)
    print(f"explanation scores ({args.explainer}) per layer, by relative depth (layer + 0.5) / n_layers")
    print(text)
    print(f"-> {out / (OUT_STEM + '.json')}, {out / (OUT_STEM + '.png')}")
    return 0
