"""``tinyinterp eval complete|grade|rouge|probes|demo``: evaluation of a run, outputs in ``<run>/analysis/eval/``.

    tinyinterp eval complete --run runs/demo --n 10
    tinyinterp eval grade --run runs/demo --base-url http://127.0.0.1:8000/v1 --all-checkpoints
    tinyinterp eval rouge --run runs/demo --half-stories 50 --similarity
    tinyinterp eval probes --run runs/demo
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tinyinterp.cli.commands import EVAL
from tinyinterp.errors import TinyinterpError
from tinyinterp.llm.options import add_llm_arguments, client_from_args


def _run_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", type=Path, required=True, help="run directory (config.json, model.safetensors, checkpoints/)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _completion_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prompts", type=Path, default=None,
                   help="YAML list or JSONL file of prompts (default: the paper's 44 evaluation prompts)")
    p.add_argument("--max-prompts", type=int, default=None, help="use only the first N prompts (default all)")
    p.add_argument("--n", type=int, default=10, help="completions per prompt (default 10)")
    p.add_argument("--max-new-tokens", type=int, default=200, help="tokens per completion at most (default 200)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature; 0 = greedy (default 1.0)")
    p.add_argument("--top-k", type=int, default=None, help="sample only from the k most likely tokens")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass, e.g. 0.9")
    p.add_argument("--seed", type=int, default=0, help="base seed; each prompt gets a seed derived from it (default 0)")
    p.add_argument("--all-checkpoints", action="store_true",
                   help="do it for every checkpoints/step_*/ of the run instead of the final weights")


def add_subparser(subparsers) -> None:
    p = subparsers.add_parser(EVAL.name, help=EVAL.help,
                              description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="eval_command", metavar="STEP", required=True)

    c = sub.add_parser("complete", help="sample n completions per prompt (+ no-LLM metrics)",
                       description="Sample completions of every evaluation prompt; writes completions/<tag>.jsonl "
                                   "and metrics_<tag>.json. Reruns resume after the last finished prompt.")
    _run_arg(c)
    _completion_args(c)
    c.set_defaults(func=run_complete)

    g = sub.add_parser("grade", help="grade completions with an LLM (the paper's two-turn protocol)",
                       description="Grade grammar, creativity, consistency, plot and age group; cached by (model "
                                   "hash, prompt, completion, grader model). Completions missing are sampled first.")
    _run_arg(g)
    _completion_args(g)
    add_llm_arguments(g)  # the grader
    g.add_argument("--structured", choices=("auto", "on", "off"), default="auto",
                   help="ask for JSON-schema output: auto = if the server supports it (default auto)")
    g.add_argument("--parse-retries", type=int, default=2,
                   help="re-asks after an unparseable grade reply before it is flagged (default 2)")
    g.set_defaults(func=run_grade)

    r = sub.add_parser("rouge", help="ROUGE-k memorization and diversity histograms",
                       description="Max ROUGE-k of each completion over the whole training set (exact n-gram "
                                   "index), within-prompt ROUGE, optionally half-story completion and plot similarity.")
    _run_arg(r)
    r.add_argument("--k", type=int, default=2, help="n-gram order k of ROUGE-k, 1-9 (default 2)")
    r.add_argument("--train", type=Path, nargs="+", default=None,
                   help="training text files, stories separated by <|endoftext|> (default: the shared train files)")
    r.add_argument("--max-train-stories", type=int, default=None, help="use only the first N training stories")
    r.add_argument("--half-stories", type=int, default=0,
                   help="also complete the first halves of N training stories and score them vs the true halves")
    r.add_argument("--similarity", action="store_true",
                   help="★ also embed completions and training stories (all-MiniLM-L6-v2, offline) for plot similarity")
    r.add_argument("--tag", default="final", help="which completion set: final or a checkpoint tag (default final)")
    r.set_defaults(func=run_rouge)

    pr = sub.add_parser("probes", help="knowledge / reasoning / context-tracking probes",
                        description="Greedy-complete ~30 probes and score the answers automatically.")
    _run_arg(pr)
    pr.add_argument("--probes", type=Path, default=None, help="YAML probe file (default: the packaged set)")
    pr.add_argument("--llm-judge", action="store_true", help="also ask an LLM whether each answer makes sense")
    add_llm_arguments(pr)  # the judge of --llm-judge
    pr.set_defaults(func=run_probes)

    d = sub.add_parser("demo", help="quick LLM-free evaluation (what `make demo` runs)",
                       description="Completions of a few prompts, ROUGE histograms and probe scores in < 1 minute.")
    d.add_argument("--run", type=Path, required=True, help="run directory")
    d.add_argument("--n-prompts", type=int, default=8, help="evaluation prompts used (default 8)")
    d.add_argument("--n", type=int, default=3, help="completions per prompt (default 3)")
    d.set_defaults(func=run_demo)


def _completion_config(args):
    from tinyinterp.evaluation.completions import CompletionConfig
    from tinyinterp.models.generation import SamplingConfig

    sampling = SamplingConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                              top_p=args.top_p)
    return CompletionConfig(n=args.n, sampling=sampling, seed=args.seed)


def _prompts(args):
    from tinyinterp.evaluation.prompts import load_prompts

    prompts = load_prompts(args.prompts)
    return prompts[: args.max_prompts] if args.max_prompts else prompts


def run_complete(args) -> int:
    from tinyinterp.evaluation import pipeline
    from tinyinterp.evaluation.completions import completions_path

    cfg, prompts = _completion_config(args), _prompts(args)
    checkpoints = pipeline.checkpoints_to_evaluate(args.run, args.all_checkpoints)
    for ck in checkpoints:
        cs = pipeline.complete(args.run, prompts, cfg, ck, progress=not args.no_progress)
        print(f"{ck.tag}: {len(cs.records)} completions → {completions_path(args.run, ck.tag)}")
    return 0


def run_grade(args) -> int:
    from tinyinterp.evaluation import pipeline
    from tinyinterp.evaluation.grading import Grader, GraderConfig

    if args.parse_retries < 0:
        raise TinyinterpError(f"--parse-retries must be >= 0, got {args.parse_retries}")
    grader = Grader(client_from_args(args), GraderConfig(structured=args.structured, parse_retries=args.parse_retries))
    out = pipeline.grade(args.run, grader, _prompts(args), _completion_config(args), args.all_checkpoints,
                         progress=not args.no_progress)
    for tag, s in out["checkpoints"].items():
        means = ", ".join(f"{k} {v['mean']:.2f}" for k, v in s["scores"].items() if v["mean"] is not None)
        print(f"{tag}: {s['n_ok']}/{s['n']} graded ({s['n_unparseable']} unparseable, {s['n_error']} errors): {means}")
    print(f"cost this run: ${out['cost_usd_this_run']:.4f}")
    return 0


def run_rouge(args) -> int:
    from tinyinterp.evaluation import pipeline

    s = pipeline.rouge(args.run, n=args.k, train_files=args.train, half_stories=args.half_stories,
                       max_train_stories=args.max_train_stories, similarity=args.similarity, tag=args.tag,
                       progress=not args.no_progress)
    print(json.dumps({k: v for k, v in s.items() if k != "examples"}, indent=2))
    return 0


def run_probes(args) -> int:
    from tinyinterp.evaluation import pipeline

    out = pipeline.probes(args.run, args.probes, client_from_args(args) if args.llm_judge else None,
                          progress=not args.no_progress)
    cats = ", ".join(f"{k} {v:.2f}" for k, v in out["by_category"].items())
    print(f"probe accuracy {out['accuracy']:.2f} over {out['n_probes']} probes ({cats})")
    return 0


def run_demo(args) -> int:
    from tinyinterp.evaluation.pipeline import eval_demo

    print(json.dumps(eval_demo(args.run, n_prompts=args.n_prompts, n=args.n), indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``tinyinterp eval ...`` on its own (tests call this; the ``tinyinterp`` script registers add_subparser)."""
    from tinyinterp.cli import main as cli_main

    argv = list(argv or [])
    return cli_main(argv if argv[:1] == ["eval"] else ["eval", *argv])
