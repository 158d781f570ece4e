"""``tinyinterp train``: registers the sub-command; the options and the work live in :mod:`training.train`."""

from __future__ import annotations

from tinyinterp.cli.commands import Command

COMMAND = Command("train", "train a TinyStories model (builds the tokenizer and corpus first)", "training.cli:add_subparser")
"""The ``tinyinterp.commands`` entry point (pyproject.toml); this module stays light so ``tinyinterp --help`` is."""


def add_subparser(subparsers) -> None:
    from training.train import add_train_arguments, train_from_args  # torch: only when `train` is the command

    p = subparsers.add_parser(
        COMMAND.name,
        help=COMMAND.help,
        description=(
            "Build the restricted BPE tokenizer and the tokenized corpus into OUT/data (once), then train a "
            "preset from the zoo into the run directory OUT, with checkpoints, metrics.jsonl and exact resume. "
            "Works under `torchrun --nproc_per_node=N` (DDP). Example: tinyinterp train --out runs/demo "
            "--preset tinystories-1m --max-minutes 5"
        ),
    )
    add_train_arguments(p)
    p.set_defaults(func=train_from_args)
