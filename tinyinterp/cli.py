"""The ``tinyinterp`` command line: ``train``, ``sweep``, ``generate``, ``info``, ``analyze``, ``eval``, ``export``,
``datagen``, ``explain``, ``explain-compare``, ``app``.

Each feature registers its own sub-command through ``add_subparser(subparsers)``; this
module only owns ``generate`` and ``info`` and the error handling: a
:class:`~tinyinterp.errors.TinyinterpError` becomes one line ``error: …`` and exit code 2.
``main(argv)`` is what tests call.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys

from tinyinterp.errors import TinyinterpError

# Modules that contribute sub-commands, in the order they appear in --help.
FEATURE_CLIS = (
    "training.cli",
    "training.scaling_cli",
    "tinyinterp.interp.cli",
    "tinyinterp.evaluation.cli",
    "tinyinterp.hf.export",
    "datagen.cli",
    "tinyinterp.explain.cli",
    "tinyinterp.dictionaries.cli",
    "apps.cli",
)


def _add_generate(subparsers) -> None:
    p = subparsers.add_parser(
        "generate",
        help="sample stories from a model",
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
    from tinyinterp.generation import SamplingConfig, generate
    from tinyinterp.loading import load

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


def _add_info(subparsers) -> None:
    p = subparsers.add_parser(
        "info",
        help="summarise a preset, run directory or model",
        description="Show a preset's shape, or a run/model's config, parameter count and training progress.",
    )
    p.add_argument("target", nargs="?", help="preset name, run directory or model; omit to list presets")
    p.set_defaults(func=_run_info)


def _run_info(args) -> int:
    from tinyinterp.info import describe

    print(describe(args.target))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tinyinterp",
        description="Train, grade and look inside small TinyStories language models.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in FEATURE_CLIS[:1]:
        importlib.import_module(module_name).add_subparser(subparsers)
    _add_generate(subparsers)
    _add_info(subparsers)
    for module_name in FEATURE_CLIS[1:]:
        importlib.import_module(module_name).add_subparser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
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
        return int(args.func(args) or 0)
    except TinyinterpError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
