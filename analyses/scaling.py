"""Figures of a scaling sweep (Eldan & Li 2023, Figs. 23–24): frontier, power-law fit, compute-optimal size.

    python -m analyses.scaling runs/scaling-tiny            # writes runs/scaling-tiny/analysis/scaling/
    python -m analyses.scaling runs/scaling-tiny --bootstrap 500 --out figures/

The analysis itself (frontier, L(C) fit with bootstrap intervals, IsoFLOP N_opt(C)) is
:mod:`tinyinterp.scaling.analysis`, the plots :mod:`tinyinterp.scaling.plots` (the app's Scaling page
shows the same). This script summarizes the sweep when it has no ``sweep_summary.json`` yet, saves
``scaling.json`` and the PNGs (loss vs FLOPs coloured by width with the frontier and the fit; final loss
by depth and by heads at a fixed width; the IsoFLOP curves and N_opt(C)). With ``--quality``,
:mod:`analyses.scaling_quality` also evaluates each run's stories (LLM grades of grammar/creativity/consistency
with ``--base-url``, otherwise no-LLM metrics and probes) vs. size, depth, heads.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tinyinterp.cli.support import run_cli
from tinyinterp.errors import TinyinterpError
from tinyinterp.runs.layout import SWEEP_SUMMARY_FILE
from tinyinterp.scaling.analysis import OUT_SUBDIR, analyze, describe
from tinyinterp.scaling.plots import write_plots


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analyses.scaling", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", type=Path, help="sweep folder of `tinyinterp sweep run` (holds sweep_summary.json)")
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
    if not (args.sweep / SWEEP_SUMMARY_FILE).is_file() and args.sweep.is_dir():
        from training.scaling_sweep import summarize

        summarize(args.sweep)  # a sweep whose shards never summarized: merge what finished first
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
