"""``tinyinterp sae train|cache|eval``: sparse dictionaries (TopK SAEs and transcoders) on a model's hooks.

    tinyinterp sae train runs/demo --hook blocks.1.hook_resid_post --width 1024 --k 16 --tokens 500000
    tinyinterp sae train runs/demo --transcoder 1 --width 1024 --k 16        # ln2.hook_normalized -> hook_mlp_out
    tinyinterp sae train runs/demo --transcoder all --width 512 --k 16       # every layer, one pass: a transcoder set
    torchrun --nproc_per_node=2 -m tinyinterp.dictionaries.cli train runs/demo --hook ...   # DDP, same flags
    tinyinterp sae eval runs/demo --dict runs/demo/analysis/dictionaries/sae-blocks.1.hook_resid_post-w1024-k16
    tinyinterp sae export-neuronpedia runs/demo/analysis/dictionaries/<name> --out np-export   # after analyze features

Dictionaries go to ``RUN/analysis/dictionaries/<name>/`` (SAELens's layout, see
:mod:`tinyinterp.dictionaries.formats`) unless ``--out``; activations come from the run's training
corpus (``RUN/data/train``), evaluation uses its validation corpus (``RUN/data/val``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tinyinterp.runs import layout as runlayout
from tinyinterp.errors import TinyinterpError


def add_subparser(subparsers) -> None:
    from tinyinterp.cli.commands import SAE

    p = subparsers.add_parser(SAE.name, help=SAE.help,
                              description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="sae_command", metavar="ACTION", required=True)

    t = sub.add_parser("train", help="train a TopK SAE or transcoder", description="Train a TopK SAE on --hook, "
                       "or a transcoder of block N's MLP (--transcoder N). A killed run resumes when started again.")
    _model_args(t)
    what = t.add_mutually_exclusive_group(required=True)
    what.add_argument("--hook", help="TransformerLens hook for an SAE, e.g. blocks.1.hook_resid_post")
    what.add_argument("--transcoder", type=_layer_or_all, metavar="LAYER|all",
                      help="train a transcoder of this block's MLP; 'all': one per layer from one activation stream, "
                           "into OUT/layer_XX/ (default OUT: RUN/analysis/dictionaries/transcoders)")
    t.add_argument("--width", type=int, default=None, help="features (default 8 × the activation width)")
    t.add_argument("--k", type=int, default=32, help="active features per token (default 32)")
    t.add_argument("--tokens", type=int, default=2_000_000, help="training tokens (default 2,000,000)")
    t.add_argument("--batch-tokens", type=int, default=4096, help="tokens per step (default 4096)")
    t.add_argument("--lr", type=float, default=None, help="learning rate (default 2e-4 / sqrt(width / 16384))")
    t.add_argument("--seq-len", type=int, default=128, help="window of the model's forward passes (default 128)")
    t.add_argument("--buffer-tokens", type=int, default=65_536, help="shuffle buffer in tokens (default 65,536)")
    t.add_argument("--checkpoint-every", type=int, default=200, help="steps between checkpoints (default 200)")
    t.add_argument("--cache", default=None, help="read activations from this cache (`tinyinterp sae cache`)")
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(func=run_train)

    c = sub.add_parser("cache", help="write activations once to a memory-mapped file, for sweeps")
    _model_args(c)
    what = c.add_mutually_exclusive_group(required=True)
    what.add_argument("--hook")
    what.add_argument("--transcoder", type=int, metavar="LAYER")
    c.add_argument("--tokens", type=int, default=2_000_000, help="rows to cache (default 2,000,000)")
    c.add_argument("--seq-len", type=int, default=128)
    c.add_argument("--seed", type=int, default=0)
    c.set_defaults(func=run_cache)

    e = sub.add_parser("eval", help="SAELens's metrics on held-out tokens; writes eval.json beside the weights")
    _model_args(e)
    e.add_argument("--dict", required=True, help="dictionary folder (ours/SAELens layout, or eai-sparsify's)")
    e.add_argument("--tokens", type=int, default=20_000, help="held-out tokens evaluated (default 20,000)")
    e.add_argument("--seq-len", type=int, default=128)
    e.set_defaults(func=run_eval)

    n = sub.add_parser("export-neuronpedia", help="features, top activations and explanations as Neuronpedia jsonl.gz",
                       description="Export a dictionary's feature index (and its explanations, if any) in Neuronpedia's "
                       "import format: OUT/<model id>/<layer>-<source set>/{features,activations,explanations}/*.jsonl.gz.")
    n.add_argument("dict", metavar="DIR", help="dictionary folder with a feature index (`tinyinterp analyze features`)")
    n.add_argument("--out", required=True, help="export folder (a new <model id>/<source id> folder is made in it)")
    n.add_argument("--model", default=None, help="the model the index was built on (default: the run DIR is in)")
    n.add_argument("--model-id", default=None, help="Neuronpedia model id (default: from the model's name)")
    n.add_argument("--source-set", default=None, help="Neuronpedia source set (default tinyinterp-<kind>-<hook>-w<width>)")
    n.add_argument("--creator", default="tinyinterp", help="creator / author id written in the rows")
    n.add_argument("--k", type=int, default=None, help="top examples per feature (default: all the index holds)")
    n.add_argument("--context", type=int, default=24, help="tokens each side of an example (default 24)")
    n.add_argument("--device", default="cpu")
    n.add_argument("--no-progress", action="store_true", help="hide progress bars")
    n.set_defaults(func=run_export_neuronpedia)


def _layer_or_all(value: str):
    if value == "all":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a layer number or 'all', got {value!r}") from None


def _model_args(p) -> None:
    p.add_argument("model", help="run directory (or anything `tinyinterp.load` takes, with --corpus)")
    p.add_argument("--corpus", default=None, help="tokenized corpus folder (default RUN/data/train; eval: RUN/data/val)")
    p.add_argument("--out", default=None, help="output folder (default RUN/analysis/dictionaries/<name>)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _corpus(args, split: str):
    from tinyinterp.data.corpus import TokenizedCorpus

    path = Path(args.corpus) if args.corpus else runlayout.corpus_dir(Path(args.model), split)
    if not path.is_dir():
        raise TinyinterpError(f"--corpus {path}: no tokenized corpus there; pass --corpus DIR")
    return TokenizedCorpus.open(path)


def _config(args, model):
    from tinyinterp.dictionaries.activations import hook_widths
    from tinyinterp.dictionaries.config import DictionaryConfig, transcoder_hooks

    if args.transcoder is not None:
        if not 0 <= args.transcoder < model.cfg.n_layers:
            raise TinyinterpError(f"--transcoder {args.transcoder}: the model has layers 0..{model.cfg.n_layers - 1}")
        kind, (hook_in, hook_out) = "transcoder", transcoder_hooks(args.transcoder)
    else:
        kind, hook_in, hook_out = "sae", args.hook, args.hook
    d_in, d_out = hook_widths(model, [hook_in, hook_out])
    width = getattr(args, "width", None) or 8 * d_in
    return DictionaryConfig(kind, hook_in, hook_out, d_in, d_out, width, getattr(args, "k", 32),
                            model_name=getattr(model, "name", "") or str(args.model))


def _out(args, name: str) -> Path:
    return Path(args.out) if args.out else runlayout.dictionaries_dir(Path(args.model)) / name


def dictionary_name(cfg) -> str:
    return f"{cfg.kind}-{cfg.hook_in if cfg.kind == 'sae' else cfg.hook_out}-w{cfg.d_sae}-k{cfg.k}"


def _load(args):
    import tinyinterp

    return tinyinterp.load(args.model, device=args.device).eval()


def run_train(args) -> int:
    from tinyinterp.dictionaries.training import train_dictionary

    model = _load(args)
    if args.transcoder == "all":
        return _train_set(args, model)
    cfg = _config(args, model)
    train = _train_config(args)
    out = _out(args, dictionary_name(cfg))
    corpus = None if args.cache else _corpus(args, runlayout.TRAIN_SPLIT)
    train_dictionary(model, corpus, cfg, train, out, cache=Path(args.cache) if args.cache else None,
                     progress=not args.no_progress)
    print(f"dictionary: {out}")
    return 0


def _train_config(args):
    from tinyinterp.dictionaries.config import TrainConfig

    return TrainConfig(tokens=args.tokens, batch_tokens=args.batch_tokens, lr=args.lr, seq_len=args.seq_len,
                       buffer_tokens=max(args.buffer_tokens, args.batch_tokens), checkpoint_every=args.checkpoint_every,
                       seed=args.seed)


def _train_set(args, model) -> int:
    from tinyinterp.dictionaries.transcoder_set import train_transcoder_set

    if args.cache:
        raise TinyinterpError("--cache holds one hook pair; --transcoder all streams every layer from the model")
    out = _out(args, runlayout.TRANSCODERS_SET)
    train_transcoder_set(model, _corpus(args, runlayout.TRAIN_SPLIT), args.width, args.k, _train_config(args), out,
                         progress=not args.no_progress, model_name=str(args.model))
    print(f"transcoders: {out} ({model.cfg.n_layers} layers)")
    return 0


def run_cache(args) -> int:
    from tinyinterp.dictionaries.activations import ActivationStream, cache_activations

    model = _load(args)
    cfg = _config(args, model)
    out = Path(args.out) if args.out else runlayout.dictionaries_dir(Path(args.model)) / f"cache-{cfg.hook_in}"
    stream = ActivationStream(model, _corpus(args, runlayout.TRAIN_SPLIT), cfg, args.seq_len, 16, 65_536, seed=args.seed)
    cache_activations(stream, out, args.tokens, progress=not args.no_progress)
    print(f"activations: {out}")
    return 0


def run_eval(args) -> int:
    from tinyinterp.dictionaries.evaluation import evaluate_dictionary, save_evaluation
    from tinyinterp.dictionaries.formats import check_against_model, load_dictionary

    model = _load(args)
    coder = load_dictionary(args.dict)
    check_against_model(coder, model)
    result = evaluate_dictionary(model, coder, _corpus(args, runlayout.VAL_SPLIT), n_tokens=args.tokens, seq_len=args.seq_len,
                                 progress=not args.no_progress)
    path = save_evaluation(result, Path(args.dict))
    for key in ("explained_variance", "mse", "cossim", "l0", "ce_loss_score", "kl_div_score", "dead_fraction",
                "dense_features"):
        print(f"{key:>20}: {result[key]:.4g}" if isinstance(result[key], float) else f"{key:>20}: {result[key]}")
    print(f"{'n_tokens':>20}: {result['n_tokens']}  (dead = never active in these tokens)")
    print(f"written: {path}")
    return 0


def _run_of(dict_dir: Path) -> Path | None:
    """The run a dictionary folder belongs to (``RUN/analysis/dictionaries/<name>``), or None."""
    dict_dir = dict_dir.resolve()
    for parent in dict_dir.parents:
        if runlayout.dictionaries_dir(parent).resolve() in (dict_dir, *dict_dir.parents):
            return parent
    return None


def run_export_neuronpedia(args) -> int:
    import dataclasses

    import tinyinterp
    from tinyinterp.dictionaries.formats import load_dictionary
    from tinyinterp.dictionaries.neuronpedia import default_ids, export_neuronpedia

    dict_dir = Path(args.dict)
    coder = load_dictionary(dict_dir)
    model_path = args.model or _run_of(dict_dir)
    if model_path is None:
        raise TinyinterpError(f"--model: {dict_dir} is not inside a run's analysis/dictionaries; pass --model RUN")
    if args.k is not None and args.k < 1:
        raise TinyinterpError(f"--k must be a positive integer, got {args.k}")
    if args.context < 0:
        raise TinyinterpError(f"--context must be >= 0, got {args.context}")
    model = tinyinterp.load(str(model_path), device=args.device).eval()
    ids = default_ids(coder, model_name=getattr(model, "name", None) or str(model_path), creator=args.creator)
    ids = dataclasses.replace(ids, **{k: v for k, v in (("model_id", args.model_id), ("source_set", args.source_set)) if v})
    target = export_neuronpedia(dict_dir, Path(args.out), model, ids, k=args.k, context=args.context,
                                progress=not args.no_progress)
    print(f"neuronpedia export: {target}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from tinyinterp.cli import main as tinyinterp_main

    return tinyinterp_main(["sae", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
