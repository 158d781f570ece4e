"""``tinyinterp sweep run|list|summarize``: registers the scaling-sweep commands of :mod:`training.scaling_sweep`."""

from __future__ import annotations

from tinyinterp.cli.commands import Command

COMMAND = Command("sweep", "scaling sweeps: width x depth x heads grids with a token/FLOPs budget per run",
                  "training.scaling_cli:add_subparser")
"""The ``tinyinterp.commands`` entry point (pyproject.toml); this module stays light so ``tinyinterp --help`` is."""


def add_subparser(subparsers) -> None:
    from training.scaling_sweep import add_commands  # torch: only when `sweep` is the command

    p = subparsers.add_parser(
        COMMAND.name,
        help=COMMAND.help,
        description=(
            "Train a scaling grid (one run directory per point, resumable, finished runs skipped), print one command "
            "per run for a job launcher, or merge what finished. Example: tinyinterp sweep run "
            "training/scaling_tiny.yaml --out runs/scaling-tiny --shard 0/2; then "
            "python -m analyses.scaling runs/scaling-tiny for the frontier, fit and plots."
        ),
    )
    add_commands(p.add_subparsers(dest="sweep_command", metavar="COMMAND", required=True))
