"""``tinyinterp datagen stories|instruct|ood|batch``: generate TinyStories-style data with any OpenAI-compatible server.

The API key is read from the environment only (``$OPENAI_API_KEY``, or the variable named by
``--api-key-env``) so it never appears in shell history, process lists or saved files.
Registered into the main CLI by ``tinyinterp/cli.py`` via ``add_subparser``; ``main(argv)`` runs it
standalone (``python -m datagen.cli stories --n 10 --out s.jsonl``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from tinyinterp.llm import ENV_API_KEY, ENV_BASE_URL, ENV_MODEL, LLMClient, LLMConfig, Price


def _add_llm_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("LLM server")
    g.add_argument("--base-url", default=None, help=f"OpenAI-compatible server root ending in /v1 (default ${ENV_BASE_URL}, "
                                                    "else the OpenAI API)")
    g.add_argument("--model", default=None, help=f"model name (default ${ENV_MODEL}, else gpt-4o-mini)")
    g.add_argument("--api-key-env", default=ENV_API_KEY, help="name of the environment variable holding the API key "
                                                              "(the key itself is never taken on the command line)")
    g.add_argument("--concurrency", type=int, default=8, help="requests in flight at once (default 8)")
    g.add_argument("--timeout", type=float, default=60.0, help="seconds per request attempt before retrying (default 60)")
    g.add_argument("--max-retries", type=int, default=6, help="retries per request on 429/5xx/timeouts/drops (default 6)")
    g.add_argument("--backoff-base", type=float, default=1.0, help="first retry delay in seconds; doubles each retry (default 1)")
    g.add_argument("--price-in", type=float, default=None, help="USD per 1M prompt tokens for cost estimates (default: built-in table)")
    g.add_argument("--price-out", type=float, default=None, help="USD per 1M completion tokens for cost estimates")
    g.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _add_story_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n", type=int, required=True, help="number of stories in the dataset (already generated ones are kept)")
    p.add_argument("--out", type=Path, required=True, help="output JSONL (one story a line; field 'text' is the training text)")
    p.add_argument("--seed", type=int, default=0, help="run seed: fixes every prompt's words and features (default 0)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1.0)")
    p.add_argument("--max-tokens", type=int, default=1000, help="completion token budget per story (default 1000)")
    p.add_argument("--min-words", type=int, default=20, help="shorter replies are rejected and retried (default 20)")
    p.add_argument("--max-features", type=int, default=3, help="at most this many features per prompt (default 3)")


def make_client(args: argparse.Namespace) -> LLMClient:
    prices = None
    if args.price_in is not None or args.price_out is not None:
        model = args.model or os.environ.get(ENV_MODEL) or "gpt-4o-mini"
        prices = {model: Price(args.price_in or 0.0, args.price_out or 0.0)}
    return LLMClient(LLMConfig(base_url=args.base_url, model=args.model, api_key=os.environ.get(args.api_key_env),
                               max_concurrency=args.concurrency, timeout_s=args.timeout, max_retries=args.max_retries,
                               backoff_base_s=args.backoff_base, prices=prices))


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
    summary = generate_stories(_story_cfg(args), make_client(args))
    print(json.dumps(summary.as_dict(), indent=2))
    return 0 if summary.failed == 0 else 1


def cmd_instruct(args: argparse.Namespace) -> int:
    from datagen.instruct import InstructRunConfig, generate_instruct

    cfg = InstructRunConfig(input=args.input, out=args.out, seed=args.seed, progress=not args.no_progress)
    summary = generate_instruct(cfg, make_client(args))
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
    summary = run_batch(cfg, make_client(args))
    print(json.dumps(summary, indent=2))
    return 0 if summary["stories_missing"] == 0 or args.no_wait else 1


def add_subparser(subparsers) -> None:
    """Register ``datagen`` and its sub-commands on the main CLI's subparsers."""
    top = subparsers.add_parser("datagen", help="generate TinyStories-style datasets with an LLM",
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
