"""The ``tinyinterp`` command line: ``main(argv)`` (what tests call) and the library's ``generate`` and ``info``.

Sub-commands are :class:`~tinyinterp.cli.commands.Command` entry points (``tinyinterp.commands`` in
``pyproject.toml``): ``train``, ``sweep``, ``generate``, ``info``, ``analyze``, ``eval``, ``export``,
``datagen``, ``explain``, ``explain-compare``, ``app``. ``main`` builds the full parser of the command
it runs only, so ``tinyinterp --help`` lists every command without importing torch. A
:class:`~tinyinterp.errors.TinyinterpError` becomes one line ``error: …`` and exit code 2
(:func:`tinyinterp.cli.support.run_cli`).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from tinyinterp.cli.support import run_cli
from tinyinterp.cli.commands import GENERATE, INFO, add_commands


def add_generate_subparser(subparsers) -> None:
    p = subparsers.add_parser(
        GENERATE.name,
        help=GENERATE.help,
        description="Continue prompts with a model (run dir, checkpoint, local HF folder or hub name).",
    )
    p.add_argument("model", help="run directory, checkpoint directory, HF model folder or hub name")
    p.add_argument("prompts", nargs="*", help="prompt texts (default: a few of the paper's evaluation prompts)")
    p.add_argument("-n", "--num-samples", type=int, default=1, help="completions per prompt (default 1)")
    p.add_argument("--max-new-tokens", type=int, default=200, help="tokens to generate at most (default 200)")
    p.add_argument("--temperature", type=float, default=0.7, help="sampling temperature; 0 = greedy (default 0.7)")
    p.add_argument("--top-k", type=int, default=None, help="keep only the k most likely tokens")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass, e.g. 0.9")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--no-kv-cache", action="store_true", help="recompute the whole prefix at every step")
    p.add_argument("--json", action="store_true", help="print JSON lines instead of text")
    p.add_argument("--backend", choices=("native", "bridge"), default="native",
                   help="for HF checkpoints: our own model (native, default) or TransformerLens's TransformerBridge")
    p.set_defaults(func=_run_generate)


def _run_generate(args) -> int:
    from tinyinterp.models.generation import SamplingConfig, generate
    from tinyinterp.models.loading import load

    model = load(args.model, backend=args.backend)
    prompts = list(args.prompts)
    if not prompts:
        from tinyinterp.evaluation.prompts import load_prompts

        prompts = [p.text for p in load_prompts()[:3]]
    cfg = SamplingConfig(
        max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
        top_p=args.top_p, seed=args.seed, use_kv_cache=not args.no_kv_cache,
    )
    batch = [p for p in prompts for _ in range(args.num_samples)]
    outputs = generate(model, batch, cfg)
    for prompt, completion in zip(batch, outputs):
        if args.json:
            print(json.dumps({"prompt": prompt, "completion": completion}))
        else:
            print(f"{prompt}\033[1m{completion}\033[0m\n" if sys.stdout.isatty() else f"{prompt}{completion}\n")
    return 0


def add_info_subparser(subparsers) -> None:
    p = subparsers.add_parser(
        INFO.name,
        help=INFO.help,
        description="Show a preset's shape, or a run/model's config, parameter count and training progress.",
    )
    p.add_argument("target", nargs="?", help="preset name, run directory or model; omit to list presets")
    p.set_defaults(func=_run_info)


def _run_info(args) -> int:
    from tinyinterp.cli.info import describe

    print(describe(args.target))
    return 0


def _command_word(argv: list[str]) -> str | None:
    """The sub-command ``argv`` asks for: its first word that is not an option (the top level has no valued options)."""
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The ``tinyinterp`` parser. Without ``argv`` every command gets its full parser; with ``argv``, only
    the command it names does (the others get their help line), so listing commands stays light."""
    parser = argparse.ArgumentParser(
        prog="tinyinterp",
        description="Train, grade and look inside small TinyStories language models.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = None if argv is None else _command_word(argv)
    add_commands(subparsers, full=lambda command: argv is None or command.name == wanted)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return run_cli(lambda: args.func(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
