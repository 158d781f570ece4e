"""A small grid sweep: every (preset, lr) pair trains into its own run dir; results go to one summary JSON.

    python -m training.grid_sweep --out runs/sweep --presets test-small tinystories-1m --lrs 1e-3 3e-3 --max-steps 500

The tokenizer and tokenized corpus are built once in ``<out>/data`` and shared by every run. Each
run is ``<out>/<preset>-lr<lr>/``, an ordinary run directory (resumable like any other); a run that
already finished is skipped, so re-running the same command continues an interrupted sweep.
``<out>/sweep_summary.json`` (kind ``grid``, the schema of :mod:`tinyinterp.scaling.summary`) is
rewritten (atomically) after every run with one entry per run and the ``best`` one by final
validation loss. Run names write the learning rate exactly, so two distinct rates never share a
folder; a grid that names one point twice is refused.

Scaling sweeps (width x depth x heads x lr x seed, a token or FLOPs budget per run) are the other
program, :mod:`training.scaling_sweep` (``tinyinterp sweep run|list|summarize``).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import logging
import math
import sys
from pathlib import Path
from typing import Any

from tinyinterp.runs import rundir
from tinyinterp.cli.support import run_cli
from tinyinterp.errors import TinyinterpError
from tinyinterp.runs.layout import CONFIG_FILE, SWEEP_SUMMARY_FILE
from tinyinterp.scaling.summary import GRID, write_sweep_summary
from training.config import TrainConfig
from training.scaling_spec import exact_number
from training.train import add_train_arguments, config_from_args, prepare_data
from training.trainer import DistContext, Trainer

log = logging.getLogger(__name__)

SUMMARY_FILE = SWEEP_SUMMARY_FILE


def run_name(preset: str, lr: float) -> str:
    """``test-tiny-lr0.001``: the learning rate written exactly (``:g`` where that is exact, as before)."""
    return f"{preset}-lr{exact_number(lr)}"


def _check_grid(presets: list[str], lrs: list[float]) -> None:
    """One line for a grid that cannot train: unknown presets, rates that are not > 0, a point named twice."""
    from tinyinterp.models.zoo import PRESETS

    unknown = [p for p in presets if p not in PRESETS]
    if unknown:
        raise TinyinterpError(f"--presets: unknown {unknown}; choose from: {', '.join(PRESETS)}")
    bad = [lr for lr in lrs if not (math.isfinite(lr) and lr > 0)]
    if bad:
        raise TinyinterpError(f"--lrs: learning rates must be finite and > 0, got {bad}")
    names = [run_name(p, lr) for p, lr in itertools.product(presets, lrs)]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise TinyinterpError(f"--presets/--lrs: the grid names {repeated} more than once; give each preset and rate once")


def _finished_result(run_dir: Path, cfg: TrainConfig) -> dict[str, Any] | None:
    """The saved result of a run that already trained with these settings, else None."""
    if not rundir.is_run_dir(run_dir):
        return None
    config = rundir.read_json(run_dir / CONFIG_FILE)
    if config.get("train") == cfg.to_dict() and "result" in config:
        return config["result"]
    return None


def run_sweep(base: TrainConfig, presets: list[str], lrs: list[float], out: Path, progress: bool = True) -> dict[str, Any]:
    """Train every (preset, lr) of the grid into ``out`` and return (and save) the summary."""
    from tinyinterp.models.zoo import preset_config

    _check_grid(presets, lrs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer, train, val = prepare_data(base, out, dist_ctx=DistContext(), progress=progress)
    extra = {"tokenizer": tokenizer.describe(), "data": {"train": train.source, "val": val.source,
                                                         "train_tokens": train.n_tokens, "val_tokens": val.n_tokens}}
    entries = []
    for preset, lr in itertools.product(presets, lrs):
        cfg = dataclasses.replace(base, preset=preset, lr=lr)
        run_dir = out / run_name(preset, lr)
        result = _finished_result(run_dir, cfg)
        if result is None:
            log.info("sweep: training %s", run_dir.name)
            trainer = Trainer(cfg, preset_config(preset, d_vocab=tokenizer.vocab_size), train, tokenizer.eot_id, run_dir,
                              val_data=val, tokenizer=tokenizer, extra_config=extra, progress=progress)
            trainer.fit()
            result = rundir.read_json(run_dir / CONFIG_FILE)["result"]
        else:
            log.info("sweep: %s already finished, skipping", run_dir.name)
        entries.append({"name": run_dir.name, "preset": preset, "lr": lr, "run_dir": str(run_dir), **result})
        _write_summary(out, entries)
    return _write_summary(out, entries)


def _write_summary(out: Path, entries: list[dict[str, Any]]) -> dict[str, Any]:
    return write_sweep_summary(out, GRID, entries)


def main(argv: list[str] | None = None, prog: str = "python -m training.grid_sweep") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    add_train_arguments(parser)
    parser.add_argument("--presets", nargs="+", default=None, help="presets of the grid (default: --preset)")
    parser.add_argument("--lrs", nargs="+", type=float, default=None, help="peak learning rates of the grid (default: --lr)")
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    return run_cli(lambda: _run_grid(args))


def _run_grid(args: argparse.Namespace) -> int:
    base = config_from_args(args)
    summary = run_sweep(base, args.presets or [base.preset], args.lrs or [base.lr], args.out, progress=not args.no_progress)
    for e in summary["runs"]:
        val = f"{e['final_val_loss']:.4f}" if e.get("final_val_loss") is not None else "n/a"
        print(f"{e['name']:>32}: {e['steps']} steps, val loss {val}")
    print(f"best: {summary['best']} (summary: {Path(args.out) / SUMMARY_FILE})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
