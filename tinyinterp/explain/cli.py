"""``tinyinterp explain RUN``: explain MLP neurons in words and score each explanation by simulation.

``--dict DIR`` explains the features of a sparse dictionary instead (its feature index from ``tinyinterp
analyze features RUN --dict DIR``), with the same records, explainer, simulator and scoring; results go to
``DIR/explanations/<slug>.jsonl`` in the neuron format (layer 0, id ``L0N<feature>``).

Needs the run's neuron index (``tinyinterp analyze neurons RUN``). ``--explainer baseline`` works
offline; ``--explainer llm`` talks to any OpenAI-compatible server (``--base-url``, key from
``$OPENAI_API_KEY``). ``--dry-run`` prints the cost estimate and stops; RUN may then also be a preset
name (``tinystories-33m``): records are cut from the shared TinyStories text with the GPT-2 BPE.
``--batch`` uses the OpenAI Batch API (half price; rerun the same command to collect). Rerunning
continues where a run stopped. LLM options: :mod:`tinyinterp.llm.options`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tinyinterp.cli.commands import EXPLAIN
from tinyinterp.errors import TinyinterpError
from tinyinterp.llm.options import add_llm_arguments, client_from_args, model_from_args, prices_from_args


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _neuron_list(text: str) -> list[tuple[int | None, int]]:
    out = []
    for item in filter(None, (x.strip() for x in text.split(","))):
        try:
            layer, _, neuron = item.rpartition(":")
            out.append((int(layer) if layer else None, int(neuron)))
        except ValueError:
            raise argparse.ArgumentTypeError(f"--neurons: {item!r} is not N or LAYER:N") from None
    return out


def add_subparser(subparsers) -> None:
    p = subparsers.add_parser(
        EXPLAIN.name, help=EXPLAIN.help,
        description=__doc__.split("\n\n")[0] + " Writes RUN/analysis/explanations/<explainer>.jsonl.")
    p.add_argument("run", help="run directory with analysis/neurons (or, with --dry-run, a preset name)")
    p.add_argument("--index", type=Path, default=None,
                   help="neuron index folder (default RUN/analysis/neurons); for another model (HF folder such as "
                        "GPT-2, hub name) the folder from `tinyinterp analyze neurons MODEL --corpus TEXTS --out DIR`")
    p.add_argument("--dict", type=Path, default=None, metavar="DIR",
                   help="explain the features of this sparse dictionary instead of neurons (needs `tinyinterp analyze "
                        "features RUN --dict DIR`; layer 0, neuron = feature id); results in DIR/explanations")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default RUN/analysis/explanations; for another model with --index: "
                        "INDEX/../explanations). Compare two models: `tinyinterp explain-compare A B`")
    p.add_argument("--explainer", choices=("baseline", "llm"), default="baseline",
                   help="baseline: top tokens + category, offline (default); llm: the OpenAI-compatible server")
    sel = p.add_argument_group("which neurons")
    sel.add_argument("--layers", type=_int_list, default=None, help="comma-separated layers (default all)")
    sel.add_argument("--neurons", type=_neuron_list, default=None,
                     help="comma-separated neurons: N (in every selected layer) or LAYER:N (default all)")
    sel.add_argument("--top-by", choices=("purity", "random"), default=None,
                     help="order: purity (purest first, needs purity.json) or random (seeded); default layer order")
    sel.add_argument("--max-neurons", type=int, default=None, help="explain at most this many (after ordering)")
    rec = p.add_argument_group("activation records")
    rec.add_argument("--n-explain", type=int, default=10, help="top records shown to the explainer (default 10)")
    rec.add_argument("--n-heldout-top", type=int, default=5, help="held-out top records for scoring (default 5)")
    rec.add_argument("--n-heldout-random", type=int, default=5, help="held-out random records for scoring (default 5)")
    rec.add_argument("--context-left", type=int, default=24, help="tokens before a record's centre (default 24)")
    rec.add_argument("--context-right", type=int, default=8, help="tokens after a record's centre (default 8)")
    rec.add_argument("--random-source", choices=("quantile", "pool"), default="quantile",
                     help="held-out random records: quantile = the index's quantile examples (stratified), topped "
                          "up from random positions; pool = random positions only (default quantile)")
    rec.add_argument("--seed", type=int, default=0, help="seed of random records and --top-by random (default 0)")
    rec.add_argument("--device", default="cpu", help="device for the model passes (default cpu)")
    p.add_argument("--simulation", choices=("auto", "logprobs", "json"), default="auto",
                   help="auto: logprobs expected value when the server returns logprobs, else validated JSON")
    p.add_argument("--neuron-concurrency", type=int, default=None,
                   help="neurons in progress at once (default: 2 x --concurrency)")
    p.add_argument("--dry-run", action="store_true", help="print the number of neurons and the cost estimate, then stop")
    p.add_argument("--batch", action="store_true", help="use the Batch API (half price, hours); rerun to collect")
    p.add_argument("--no-wait", action="store_true", help="with --batch: submit and return instead of polling")
    p.add_argument("--poll-interval", type=float, default=30.0, help="with --batch: seconds between polls (default 30)")
    p.add_argument("--summary", action="store_true", help="print the score distribution per explainer and layer, then stop")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_llm_arguments(p)
    p.set_defaults(func=run_explain)


def _run_config(args):
    from tinyinterp.explain.records import RecordConfig
    from tinyinterp.explain.runner import ExplainRunConfig

    records = RecordConfig(n_explain=args.n_explain, n_heldout_top=args.n_heldout_top,
                           n_heldout_random=args.n_heldout_random, context_left=args.context_left,
                           context_right=args.context_right, seed=args.seed, device=args.device,
                           random_source=args.random_source)
    return ExplainRunConfig(explainer=args.explainer, layers=args.layers, neurons=args.neurons, top_by=args.top_by,
                            max_neurons=args.max_neurons, records=records, simulation=args.simulation,
                            neuron_concurrency=args.neuron_concurrency or 2 * args.concurrency, seed=args.seed,
                            progress=not args.no_progress)


def _dry_run_preset(args) -> int:
    """Cost of explaining every neuron of a preset's shape, from synthetic records of real text."""
    import numpy as np

    from tinyinterp.explain.cost import estimate, synthetic_records
    from tinyinterp.data.paths import data_dir, gpt2_tokenizer_file
    from tinyinterp.data.tokenizer import Tokenizer
    from tinyinterp.models.zoo import PRESETS, preset_config

    tok = Tokenizer.load(gpt2_tokenizer_file())
    cfg = preset_config(args.run, d_vocab=tok.vocab_size)
    text = (data_dir() / "tinystories" / "validation-hf-head.unsegmented.txt").read_text(encoding="utf-8")[:400_000]
    ids = np.asarray(tok.encode(text), dtype=np.int64)
    run_cfg = _run_config(args)
    layers = run_cfg.layers if run_cfg.layers is not None else range(cfg.n_layers)
    n = len(layers) * cfg.d_mlp if run_cfg.neurons is None else len(run_cfg.neurons)
    n = min(n, run_cfg.max_neurons or n)
    samples = synthetic_records(ids, tok.token_str, run_cfg.records, n=16, seed=args.seed)
    est = estimate(samples, n, model_from_args(args), lambda s: len(tok.encode(s)), args.simulation, prices_from_args(args))
    print(f"preset {args.run} ({PRESETS[args.run].description}): {cfg.n_layers} layers x {cfg.d_mlp} neurons")
    print(est.format())
    return 0


def run_explain(args) -> int:
    from tinyinterp.runs import rundir
    from tinyinterp.models.zoo import PRESETS

    run = Path(args.run)
    if args.dry_run and not run.exists() and args.run in PRESETS:
        return _dry_run_preset(args)
    is_run = rundir.is_run_dir(run)
    if args.dict is not None:
        if args.index is not None:
            raise TinyinterpError("--dict and --index both name the index to explain; pass one of them")
        return _explain_features(args, run if is_run else args.run)
    if not is_run and args.index is None:
        raise TinyinterpError(f"{run}: not a run directory (config.json + model.safetensors); for another model "
                              "(HF folder, hub name) pass --index DIR from `tinyinterp analyze neurons MODEL --out DIR`; "
                              "with --dry-run a preset name is also accepted")
    from tinyinterp.hf.hub import is_hf_model_dir

    # another model (HF folder, hub name: anything tinyinterp.load takes) indexed with --out elsewhere:
    # its explanations go next to that index, never into the model's folder, unless --out says otherwise
    beside_index = args.index is not None and not (is_run and not is_hf_model_dir(run))
    out = args.out or (Path(args.index).parent / "explanations" if beside_index
                       else run / rundir.ANALYSIS_DIR / "explanations")
    if args.summary:
        from tinyinterp.explain.results import score_summary

        print(score_summary(out).to_string(index=False))
        return 0

    import tinyinterp
    from tinyinterp.interp import NeuronIndex

    index_dir = args.index or run / rundir.ANALYSIS_DIR / "neurons"
    index = NeuronIndex.load(index_dir)
    model = tinyinterp.load(run if is_run else args.run, device=args.device).eval()
    return _explain(args, model, index, out)


def _explain_features(args, model_spec) -> int:
    """``explain RUN --dict DIR``: the same explainer, simulator and scoring over the dictionary's feature index."""
    from tinyinterp.runs.layout import feature_explanations_dir

    out = args.out or feature_explanations_dir(args.dict)
    if args.summary:
        from tinyinterp.explain.results import score_summary

        print(score_summary(out).to_string(index=False))
        return 0
    import tinyinterp
    from tinyinterp.interp.feature_index import FeatureIndex

    index = FeatureIndex.load(args.dict)
    model = tinyinterp.load(model_spec, device=args.device).eval()
    index.unit_source(model)  # one line now if the dictionary does not fit this model
    return _explain(args, model, index, out)


def _explain(args, model, index, out: Path) -> int:
    cfg = _run_config(args)
    if args.dry_run:
        return _dry_run(args, model, index, cfg, out)
    client = None
    if args.explainer == "llm":
        client = client_from_args(args)
    from tinyinterp.explain.runner import ExplainRunner

    if args.batch:
        if args.explainer != "llm":
            raise TinyinterpError("--batch needs --explainer llm (the baseline makes no requests)")
        from tinyinterp.explain.batch import BatchExplainConfig, run_batch

        summary = run_batch(model, index, BatchExplainConfig(run=cfg, out_dir=out, wait=not args.no_wait,
                                                             poll_interval_s=args.poll_interval), client)
        print(json.dumps(summary, indent=2))
        return 0
    runner = ExplainRunner(model, index, cfg, out, client)
    summary = runner.run()
    print(json.dumps(summary, indent=2))
    return 0 if summary["failed"] == 0 else 1


def _dry_run(args, model, index, cfg, out: Path) -> int:
    from tinyinterp.explain.cost import estimate
    from tinyinterp.explain.records import RecordBuilder
    from tinyinterp.explain.results import explainer_slug, finished_ids, neuron_id, results_path
    from tinyinterp.explain.runner import selected_neurons

    done = finished_ids(results_path(out, explainer_slug(cfg.explainer, model_from_args(args))))
    pending = [p for p in selected_neurons(index, cfg) if neuron_id(*p) not in done]
    print(f"{len(pending)} neurons to explain ({explainer_slug(cfg.explainer, model_from_args(args))})")
    if cfg.explainer == "llm" and pending:
        builder = RecordBuilder(model, index, cfg.records)
        layer = pending[0][0]
        sample = [n for l, n in pending if l == layer][:8]
        est = estimate(list(builder.build(layer, sample).values()), len(pending), model_from_args(args),
                       lambda s: len(builder.tokenizer.encode(s)), args.simulation, prices_from_args(args))
        print(est.format())
    return 0


def main(argv: list[str] | None = None) -> int:
    from tinyinterp.cli import main as tinyinterp_main

    return tinyinterp_main(["explain", *(argv or [])])
