"""A short text summary of a run's interpretability results (printed by ``make demo``).

Reads ``run_dir/analysis/neurons/purity.json`` and ``run_dir/analysis/heads/heads.json`` (written by
``tinyinterp analyze neurons|heads``) and reports the purity distribution per layer, the purest role
neurons with their top tokens, and the heads of each class. Missing parts are reported as missing.

    $ python -m tinyinterp.interp.summary runs/demo
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from tinyinterp.cli.support import run_cli
from tinyinterp.errors import TinyinterpError
from tinyinterp.interp.categories import PURITY_FILE, ROLE_MIN_DISTINCT, ROLE_THRESHOLD, PurityResult
from tinyinterp.interp.heads import HEAD_CLASSES, HEADS_FILE, HeadResult
from tinyinterp.runs.layout import HEADS_SUBDIR, NEURONS_SUBDIR, analysis_dir


def _neuron_lines(purity: PurityResult, n_top: int) -> list[str]:
    L, N = purity.purity.shape
    lines = [
        f"Neurons ({L} layers x {N}, top-{purity.k} tokens each): mean purity {np.nanmean(purity.purity):.3f} "
        f"(chance {purity.chance_purity:.3f}), mean type purity {np.nanmean(purity.type_purity):.3f}, "
        f"role neurons {100 * purity.role_mask().mean():.1f}%",
        "  layer  mean purity  median  type purity  role%  purity histogram [0-.1 … .9-1]  most common category",
    ]
    hist = purity.histogram()
    for row, h in zip(purity.layer_summary().to_dict("records"), hist):
        cats = {c: row[c] for c in purity.categories}
        best = max(cats, key=cats.get)
        lines.append(f"  {row['layer']:>5}  {row['mean_purity']:>11.3f}  {row['median_purity']:>6.3f}  "
                     f"{row['mean_type_purity']:>11.3f}  {100 * row['share_role']:>5.1f}  {str(h):<32} {best} ({100 * cats[best]:.0f}%)")
    lines.append(f"Most pure role neurons (type purity >= {ROLE_THRESHOLD} over >= {ROLE_MIN_DISTINCT} distinct top tokens, "
                 "category not 'other'; purity and type purity are of that category):")
    roles = purity.top(n_top, by="role").to_dict("records")
    for r in roles:
        lines.append(f"  L{r['layer']} N{r['neuron']:<5} {r['category']:<12} purity {r['purity']:.2f} "
                     f"type {r['type_purity']:.2f}  {', '.join(repr(t) for t in r['top_tokens'])}")
    if not roles:
        lines.append("  (none)")
    return lines


def _head_lines(heads: HeadResult, n_list: int) -> list[str]:
    counts = heads.counts()
    lines = [f"Heads ({heads.head_class.size}, sample of {heads.n_samples} windows x {heads.seq_len} tokens): "
             + ", ".join(f"{c} {counts[c]}" for c in HEAD_CLASSES)]
    frame = heads.to_frame()
    if frame.structure.notna().any():  # the distance/content decomposition exists (results since issue 11)
        flat = int(((frame.head_class == "mixed") & ~(frame.structure >= heads.thresholds.min_structure)).sum())
        lines.append(f"  (mixed: {flat} select nothing beyond uniform, the first token or themselves, structure < "
                     f"{heads.thresholds.min_structure:g}; {counts['mixed'] - flat} need both distance and content)")
    if (frame.factor != "").any():  # the named factors exist (results since issue 21)
        sem = frame.factor[frame.head_class == "semantic"].value_counts()
        if len(sem):
            lines.append("  semantic by factor: " + ", ".join(f"{f} {n}" for f, n in sem.items()))
    for c in HEAD_CLASSES:
        sub = frame[frame.head_class == c]
        if len(sub):
            shown = " ".join(f"L{l}H{h}" for l, h in zip(sub.layer[:n_list], sub["head"][:n_list]))
            more = f" (+{len(sub) - n_list} more)" if len(sub) > n_list else ""
            lines.append(f"  {c:<9} {shown}{more}")
    return lines


def summarize(run_dir: str | Path, n_top: int = 8, n_list: int = 12) -> str:
    """Text summary of ``run_dir``'s neuron purity and head classes."""
    base = analysis_dir(run_dir)
    if not base.is_dir():
        raise TinyinterpError(f"{base}: no analysis folder; run `tinyinterp analyze neurons {run_dir} --corpus …` first")
    lines = [f"Interpretability summary of {run_dir}"]
    if (base / NEURONS_SUBDIR / PURITY_FILE).is_file():
        lines += _neuron_lines(PurityResult.load(base / NEURONS_SUBDIR), n_top)
    else:
        lines.append(f"Neurons: not analysed yet ({base / NEURONS_SUBDIR / PURITY_FILE} missing)")
    if (base / HEADS_SUBDIR / HEADS_FILE).is_file():
        lines += _head_lines(HeadResult.load(base / HEADS_SUBDIR), n_list)
    else:
        lines.append(f"Heads: not analysed yet ({base / HEADS_SUBDIR / HEADS_FILE} missing)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tinyinterp.interp.summary", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="run directory (or its analysis/ folder)")
    parser.add_argument("--top", type=int, default=8, help="role neurons to list (default 8)")
    args = parser.parse_args(argv)
    return run_cli(lambda: print(summarize(args.run_dir, n_top=args.top)))


if __name__ == "__main__":
    sys.exit(main())
