"""``make demo``: the main job, end to end on a laptop CPU in about ten minutes.

1. prepare the corpus (``$TINYINTERP_DATA`` / ``../shared/data``, else the hub dataset) and the
   paper's tokenizer, then train ``tinystories-1m`` for a bounded few minutes;
2. print completions of a handful of the paper's evaluation prompts;
3. build the neuron index and head classes and print their summary, then the same analyses at every
   log-spaced snapshot of training (``analyze emergence``: how roles and head classes appeared), and
   explain every neuron with the offline baseline explainer, scored by simulation (``explain``), and
   train a small TopK transcoder of block 0's MLP and evaluate it as SAELens would (``sae``), index its
   features like neurons (``analyze features``) and explain them with the baseline (``explain --dict``),
   then train a transcoder of every layer from one activation pass and build the attribution graph of one
   evaluation prompt's next token through their features (``attribute``: sizes before/after pruning, top paths);
4. write completions, ROUGE histograms and probe scores into the run directory;
5. start the Streamlit app on the run (skipped with ``--no-serve``, ``TINYINTERP_NO_SERVE=1`` or ``CI``).

Every step is a ``tinyinterp`` sub-command, so the demo shows exactly what a user would type.
A rerun finds the finished training run (its last checkpoint) and does not train again.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

from tinyinterp.cli import main as tinyinterp_main
from tinyinterp.cli.support import run_cli
from tinyinterp.envflags import env_flag
from tinyinterp.runs.layout import TRANSCODERS_SET, dictionaries_dir, graph_path
from tinyinterp.models.zoo import PRESETS

N_DEMO_PROMPTS = 5
DEMO_GRAPH_SLUG = "demo-graph"
"""``RUN/analysis/graphs/demo-graph.json``: the attribution graph the demo builds."""


def _step(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def _run(argv: list[str]) -> None:
    shown = [a if len(a) <= 40 else a[:37] + "..." for a in argv]  # prompts are long; show their start
    print("$ tinyinterp " + shlex.join(shown), flush=True)
    code = tinyinterp_main(argv)
    if code:
        raise SystemExit(code)


def demo_graph_prompt() -> str:
    """The shortest of the paper's completion prompts (a graph's cost grows with the prompt)."""
    from tinyinterp.evaluation.prompts import load_prompts

    completions = [p.text for p in load_prompts() if p.kind == "completion"]
    return min(completions, key=len)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tinyinterp.cli.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.environ.get("TINYINTERP_DEMO_RUN", "runs/demo"), help="run directory (default runs/demo)")
    p.add_argument("--preset", default=os.environ.get("TINYINTERP_DEMO_PRESET", "tinystories-1m"), help="model preset (default tinystories-1m)")
    p.add_argument("--minutes", type=float, default=float(os.environ.get("TINYINTERP_DEMO_MINUTES", "7")),
                   help="training time budget in minutes (default 7; env TINYINTERP_DEMO_MINUTES)")
    p.add_argument("--no-serve", action="store_true", default=env_flag("TINYINTERP_NO_SERVE") or env_flag("CI"),
                   help="do not start the app at the end (default when CI or TINYINTERP_NO_SERVE is set)")
    p.add_argument("--port", type=int, default=8501, help="port of the app (default 8501)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    start = time.time()

    def train_look_evaluate() -> None:  # steps 1-4; a user error in any of them ends the demo in one line
        _step(f"1. train {args.preset} for up to {args.minutes:g} minutes on CPU")
        seq_len = min(128, PRESETS[args.preset].n_ctx) if args.preset in PRESETS else 128
        # Time-bounded: the trainer times its first steps and fits the cosine schedule to the budget.
        _run(["train", "--out", str(out), "--preset", args.preset, "--max-minutes", str(args.minutes),
              "--batch-size", "16", "--seq-len", str(seq_len), "--lr", "3e-3", "--warmup-steps", "30",
              "--eval-every", "50", "--ckpt-every", "100", "--snapshots-per-octave", "2"])
        _run(["info", str(out)])

        _step("2. stories from the paper's evaluation prompts")
        from tinyinterp.evaluation.prompts import load_prompts

        prompts = [p.text for p in load_prompts()[:N_DEMO_PROMPTS]]
        _run(["generate", str(out), *prompts, "--max-new-tokens", "120", "--temperature", "0.7", "--top-k", "40"])

        _step("3. look inside: neuron roles and attention heads")
        _run(["analyze", "neurons", str(out)])
        _run(["analyze", "heads", str(out)])
        from tinyinterp.interp.summary import summarize

        print(summarize(out))
        # Every neuron gets an explanation and a simulation score offline (the baseline explainer; an
        # LLM explainer is `tinyinterp explain RUN --explainer llm --model ...`).
        _run(["explain", str(out)])
        # Features instead of neurons: a small transcoder of block 0's MLP (about a minute at the default
        # budget), evaluated on the held-out text with SAELens's metrics (docs/dictionaries.md).
        sae_tokens = str(int(min(400_000, max(16_384, 40_000 * args.minutes))))
        sae_dir = dictionaries_dir(out) / "demo-transcoder"
        _run(["sae", "train", str(out), "--transcoder", "0", "--width", "512", "--k", "16", "--tokens", sae_tokens,
              "--out", str(sae_dir), "--no-progress"])
        _run(["sae", "eval", str(out), "--dict", str(sae_dir), "--tokens", "20000", "--no-progress"])
        # ... indexed like neurons (DICT/index: top examples, histograms, logit effects, purity; the forward
        # stops after block 0) and explained by the same offline baseline (DICT/explanations).
        _run(["analyze", "features", str(out), "--dict", str(sae_dir), "--max-docs", "1000", "--no-progress"])
        _run(["explain", str(out), "--dict", str(sae_dir), "--no-progress"])
        # Attribution graphs need a transcoder of every layer: one activation pass trains them all (the
        # budget is small, ~1 minute); then the graph of the shortest evaluation prompt's next token.
        set_tokens = str(int(min(100_000, max(8_192, 12_000 * args.minutes))))
        _run(["sae", "train", str(out), "--transcoder", "all", "--width", "256", "--k", "8", "--tokens", set_tokens,
              "--batch-tokens", "1024", "--buffer-tokens", "8192", "--out", str(dictionaries_dir(out) / TRANSCODERS_SET),
              "--no-progress"])
        graph_prompt = demo_graph_prompt()
        _run(["attribute", str(out), graph_prompt, "--transcoders", str(dictionaries_dir(out) / TRANSCODERS_SET),
              "--out", str(graph_path(out, DEMO_GRAPH_SLUG)), "--top-paths", "3", "--no-progress"])
        # How those roles appeared: the same analyses at every log-spaced snapshot of the run.
        _run(["analyze", "emergence", str(out), "--max-docs", "100", "--n-samples", "24", "--no-progress"])

        _step("4. evaluation: completions, ROUGE memorisation, probes")
        _run(["eval", "demo", "--run", str(out)])

    code = run_cli(train_look_evaluate)
    if code:
        return code
    print(f"\ndemo finished in {(time.time() - start) / 60:.1f} minutes; run directory: {out}")

    _step("5. the app")
    app_argv = ["app", "--runs", str(out.parent), "--run", out.name, "--port", str(args.port)]
    if args.no_serve:
        # CI: render every page once without serving, so a broken app still fails the demo.
        print(f"not serving (CI / --no-serve); start the app with: tinyinterp {' '.join(app_argv)}")
        app_argv.append("--check")
    return tinyinterp_main(app_argv)


if __name__ == "__main__":
    sys.exit(main())
