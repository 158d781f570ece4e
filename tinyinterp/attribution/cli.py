"""``tinyinterp attribute RUN "prompt"``: the attribution graph of a prompt's next token, pruned and saved.

    tinyinterp attribute runs/demo "Once upon a time, there was a girl named" --target " Lily"
    tinyinterp attribute runs/demo "..." --transcoders runs/demo/analysis/dictionaries/transcoders --out g.json

Transcoders: a set with one transcoder per layer (``tinyinterp sae train RUN --transcoder all``; default
``RUN/analysis/dictionaries/transcoders``). The graph is written in circuit-tracer's JSON schema to
``RUN/analysis/graphs/<slug>.json`` (or ``--out``; features explained with ``tinyinterp explain RUN --dict
SET/layer_XX`` carry their explanation as ``clerp``), and its size before/after pruning and its
strongest paths to the top (or ``--target``) logit are printed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tinyinterp.runs import layout as runlayout
from tinyinterp.errors import TinyinterpError


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_subparser(subparsers) -> None:
    from tinyinterp.attribution.prune import DEFAULT_EDGE_THRESHOLD, DEFAULT_NODE_THRESHOLD
    from tinyinterp.cli.commands import ATTRIBUTE

    p = subparsers.add_parser(ATTRIBUTE.name, help=ATTRIBUTE.help, description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="run directory (or anything `tinyinterp.load` takes, with --transcoders)")
    p.add_argument("prompt", help="the text whose next token is explained")
    p.add_argument("--transcoders", default=None,
                   help="transcoder set folder, one sub-folder per layer (default RUN/analysis/dictionaries/transcoders)")
    p.add_argument("--target", default=None, help="explain this next token (one token, e.g. ' Lily') besides the top ones")
    p.add_argument("--out", default=None, help="graph JSON file (default RUN/analysis/graphs/<slug>.json)")
    p.add_argument("--node-threshold", type=_fraction, default=DEFAULT_NODE_THRESHOLD,
                   help=f"keep the nodes holding this share of the influence (default {DEFAULT_NODE_THRESHOLD})")
    p.add_argument("--edge-threshold", type=_fraction, default=DEFAULT_EDGE_THRESHOLD,
                   help=f"keep the edges holding this share of the edge influence (default {DEFAULT_EDGE_THRESHOLD})")
    p.add_argument("--max-n-logits", type=_positive, default=10, help="at most this many logit nodes (default 10)")
    p.add_argument("--desired-logit-prob", type=_fraction, default=0.95,
                   help="logit nodes up to this cumulative probability (default 0.95)")
    p.add_argument("--top-paths", type=_positive, default=5, help="paths printed (default 5)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run_attribute)


def feature_clerps(transcoders_dir: Path, n_layers: int) -> dict[tuple[int, int], str]:
    """{(layer, feature): explanation} from each layer's ``explanations/`` (``tinyinterp explain RUN --dict``);
    an LLM explanation wins over the baseline one. Layers nobody explained give nothing."""
    from tinyinterp.explain.results import load_explanations

    clerps: dict[tuple[int, int], str] = {}
    for layer in range(n_layers):
        folder = transcoders_dir / runlayout.transcoder_layer_name(layer) / runlayout.EXPLANATIONS_SUBDIR
        if not folder.is_dir():
            continue
        frame = load_explanations(folder)
        for row in frame.sort_values("explainer", key=lambda s: s == "baseline").itertuples():
            if isinstance(row.explanation, str) and row.neuron is not None:
                clerps.setdefault((layer, int(row.neuron)), row.explanation)
    return clerps


def run_attribute(args) -> int:
    from tqdm import tqdm

    import tinyinterp
    from tinyinterp.attribution.attribute import attribute, target_token
    from tinyinterp.attribution.graph_json import graph_slug, save_graph_json
    from tinyinterp.attribution.prune import prune_graph, top_paths
    from tinyinterp.attribution.transcoders import load_transcoder_set

    stages = tqdm(total=4, desc="attribution", unit="stage", disable=args.no_progress)
    model = tinyinterp.load(args.model, device=args.device).eval()
    if model.tokenizer is None:
        raise TinyinterpError(f"{args.model}: the model has no tokenizer")
    transcoders = Path(args.transcoders) if args.transcoders else (
        runlayout.dictionaries_dir(Path(args.model)) / runlayout.TRANSCODERS_SET)
    if not transcoders.is_dir():
        raise TinyinterpError(f"--transcoders {transcoders}: no transcoder set there; train one with "
                              f"`tinyinterp sae train RUN --transcoder all`")
    target = target_token(model, args.target) if args.target is not None else None
    coders = load_transcoder_set(transcoders, model)
    stages.update()
    graph = attribute(model, coders, args.prompt, max_n_logits=args.max_n_logits,
                      desired_logit_prob=args.desired_logit_prob, target=target, progress=not args.no_progress)
    stages.update()
    pruned = prune_graph(graph, args.node_threshold, args.edge_threshold)
    stages.update()
    out = Path(args.out) if args.out else runlayout.graph_path(Path(args.model), graph_slug(args.prompt))
    clerps = feature_clerps(transcoders, model.cfg.n_layers)
    save_graph_json(graph, out, prune=pruned, tokenizer=model.tokenizer, clerps=clerps)
    stages.update()
    stages.close()
    n_before, e_before = graph.adjacency_matrix.shape[0], int((graph.adjacency_matrix != 0).sum())
    print(f"graph: {n_before} nodes, {e_before} edges; pruned: {pruned.n_nodes} nodes, {pruned.n_edges} edges")
    logit = 0
    if target is not None:
        logit = [int(t) for t in graph.logit_tokens.tolist()].index(target)
    shown = model.tokenizer.token_str(int(graph.logit_tokens[logit]))
    print(f"top paths to {shown!r} (p={float(graph.logit_probabilities[logit]):.3f}):")
    for path in top_paths(graph, k=args.top_paths, logit=logit, prune=pruned):
        print("  " + path.describe(graph, model.tokenizer, clerps))
    print(f"written: {out}")
    return 0
