"""``tinyinterp datagen stories|instruct|ood|batch``: generate TinyStories-style data with any OpenAI-compatible server.

The LLM options are :func:`tinyinterp.llm.options.add_llm_arguments` (the key comes from the environment
only). Registered into the main CLI through the ``tinyinterp.commands`` entry point (``pyproject.toml``);
``main(argv)`` runs it standalone (``python -m datagen.cli stories --n 10 --out s.jsonl``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tinyinterp.cli.commands import Command

COMMAND = Command("datagen", "generate TinyStories-style datasets with an LLM", "datagen.cli:add_subparser")
"""The ``tinyinterp.commands`` entry point (pyproject.toml). The LLM client (openai, ~2 s to import) is
imported only when a datagen command runs, so ``tinyinterp --help`` stays fast."""


def _add_llm_options(p: argparse.ArgumentParser) -> None:
    from tinyinterp.llm.options import add_llm_arguments

    add_llm_arguments(p)
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _add_story_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n", type=int, required=True, help="number of stories in the dataset (already generated ones are kept)")
    p.add_argument("--out", type=Path, required=True, help="output JSONL (one story a line; field 'text' is the training text)")
    p.add_argument("--seed", type=int, default=0, help="run seed: fixes every prompt's words and features (default 0)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1.0)")
    p.add_argument("--max-tokens", type=int, default=1000, help="completion token budget per story (default 1000)")
    p.add_argument("--min-words", type=int, default=20, help="shorter replies are rejected and retried (default 20)")
    p.add_argument("--max-features", type=int, default=3, help="at most this many features per prompt (default 3)")


def _client(args: argparse.Namespace):
    from tinyinterp.llm.options import client_from_args

    return client_from_args(args)


def _story_cfg(args: argparse.Namespace):
    from datagen.runner import StoryRunConfig

    return StoryRunConfig(out=args.out, n=args.n, seed=args.seed, temperature=args.temperature,
                          max_tokens=args.max_tokens, min_words=args.min_words, max_features=args.max_features,
                          progress=not args.no_progress)


def cmd_stories(args: argparse.Namespace) -> int:
    from datagen.prompts import make_prompt_specs
    from datagen.runner import generate_stories

    if args.dry_run:
        for spec in make_prompt_specs(min(args.n, 5), args.seed, max_features=args.max_features):
            print(json.dumps({"id": spec.id, "prompt": spec.prompt}))
        return 0
    summary = generate_stories(_story_cfg(args), _client(args))
    print(json.dumps(summary.as_dict(), indent=2))
    return 0 if summary.failed == 0 else 1


def cmd_instruct(args: argparse.Namespace) -> int:
    from datagen.instruct import InstructRunConfig, generate_instruct

    cfg = InstructRunConfig(input=args.input, out=args.out, seed=args.seed, progress=not args.no_progress)
    summary = generate_instruct(cfg, _client(args))
    print(json.dumps(summary.as_dict(), indent=2))
    return 0 if summary.failed == 0 else 1


def cmd_ood(args: argparse.Namespace) -> int:
    from datagen.instruct import write_ood_split

    print(json.dumps(write_ood_split(args.input, args.out_dir, args.seed, args.test_fraction), indent=2))
    return 0


def cmd_batch(args: argparse.Namespace) -> int:
    from datagen.batch import BatchRunConfig, run_batch

    cfg = BatchRunConfig(stories=_story_cfg(args), work_dir=args.work_dir, poll_interval_s=args.poll_interval,
                         max_requests_per_batch=args.max_requests_per_batch, wait=not args.no_wait,
                         max_wait_s=args.max_wait)
    summary = run_batch(cfg, _client(args))
    print(json.dumps(summary, indent=2))
    return 0 if summary["stories_missing"] == 0 or args.no_wait else 1


def add_subparser(subparsers) -> None:
    """Register ``datagen`` and its sub-commands on the main CLI's subparsers."""
    top = subparsers.add_parser(COMMAND.name, help=COMMAND.help,
                                description="Generate TinyStories, TinyStories-Instruct and Instruct-OOD data.")
    sub = top.add_subparsers(dest="datagen_command", metavar="{stories,instruct,ood,batch}", required=True)

    p = sub.add_parser("stories", help="N stories → JSONL (resumable; rerun to fill gaps)",
                       description="Generate stories from the paper's prompt template; reruns skip finished ids.")
    _add_story_options(p)
    p.add_argument("--dry-run", action="store_true", help="print the first prompts (up to 5) and call nothing")
    _add_llm_options(p)
    p.set_defaults(func=cmd_stories)

    p = sub.add_parser("instruct", help="stories JSONL → TinyStories-Instruct JSONL (one summary call per story)",
                       description="Add a summary, a random sentence, words and features as instruction lines.")
    p.add_argument("--input", type=Path, required=True, help="stories JSONL written by 'datagen stories' or 'datagen batch'")
    p.add_argument("--out", type=Path, required=True, help="Instruct JSONL to write (resumable)")
    p.add_argument("--seed", type=int, default=0, help="seed for the line subsets and random sentences (default 0)")
    _add_llm_options(p)
    p.set_defaults(func=cmd_instruct)

    p = sub.add_parser("ood", help="Instruct JSONL → Instruct-OOD train/test split (no LLM calls)",
                       description="Train records never show Words and Summary together; test records always do.")
    p.add_argument("--input", type=Path, required=True, help="Instruct JSONL written by 'datagen instruct'")
    p.add_argument("--out-dir", type=Path, required=True, help="folder for train.jsonl and test.jsonl")
    p.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    p.add_argument("--test-fraction", type=float, default=0.1,
                   help="share of records in the test split: exactly round(fraction x n), chosen by a seeded "
                        "hash of the ids (default 0.1)")
    p.set_defaults(func=cmd_ood)

    p = sub.add_parser("batch", help="like 'stories' but through the OpenAI Batch API (half price, resumable)",
                       description="Write batch input, upload, create, poll, download and merge; rerun to resume.")
    _add_story_options(p)
    p.add_argument("--work-dir", type=Path, default=None, help="folder for batch files and state.json (default <out>.batch/)")
    p.add_argument("--poll-interval", type=float, default=30.0, help="seconds between status polls (default 30)")
    p.add_argument("--max-requests-per-batch", type=int, default=50_000, help="requests per batch file (API limit 50,000)")
    p.add_argument("--no-wait", action="store_true", help="submit and exit; rerun the same command later to collect")
    p.add_argument("--max-wait", type=float, default=None, help="stop polling after this many seconds (rerun resumes)")
    _add_llm_options(p)
    p.set_defaults(func=cmd_batch)


def main(argv: list[str] | None = None) -> int:
    """Standalone entry: ``main(["stories", "--n", "10", "--out", "s.jsonl"])`` = ``tinyinterp datagen ...``."""
    from tinyinterp.cli import main as cli_main

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "datagen":
        argv = ["datagen"] + argv
    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
