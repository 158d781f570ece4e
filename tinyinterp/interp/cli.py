"""``tinyinterp analyze neurons|features|heads|compare|emergence|find``: build the interpretability results of a model.

MODEL is a run directory, a checkpoint, a local HF folder or a hub name (anything ``tinyinterp.load``
takes). Results go to ``MODEL/analysis/`` for a run directory (where the app and ``summarize`` look),
else to ``--out``. ``--corpus`` is a tokenized corpus folder, or a ``.txt``/``.jsonl`` file or folder of
documents that is tokenized with the model's tokenizer first (into ``<out>/corpus_<fingerprint>``).

    tinyinterp analyze neurons runs/demo --corpus runs/demo/data/val
    tinyinterp analyze heads runs/demo --corpus runs/demo/data/val
    tinyinterp analyze features runs/demo --dict runs/demo/analysis/dictionaries/demo-transcoder   # -> DICT/index
    tinyinterp analyze compare runs/demo gpt2-xl --corpus stories.txt --out analysis/ours_vs_gpt2xl
"""

from __future__ import annotations


import logging
from pathlib import Path

from tinyinterp.runs import rundir
from tinyinterp.cli.commands import ANALYZE
from tinyinterp.errors import TinyinterpError
from tinyinterp.runs.layout import ANALYSIS_DIR, COMPARE_SUBDIR, EMERGENCE_SUBDIR, HEADS_SUBDIR, NEURONS_SUBDIR, corpus_dir

log = logging.getLogger(__name__)


def add_subparser(subparsers) -> None:
    p = subparsers.add_parser(ANALYZE.name, help=ANALYZE.help,
                              description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="analysis", metavar="ANALYSIS", required=True)

    n = sub.add_parser("neurons", help="streaming top-k neuron index + role purity",
                       description="Index the top-k activating tokens of every MLP neuron and score purity.")
    _common(n)
    n.add_argument("--k", type=int, default=20, help="top activations kept per neuron (default 20)")
    n.add_argument("--seq-len", type=int, default=None, help="window length in tokens (default min(n_ctx, 256))")
    n.add_argument("--max-docs", type=int, default=None, help="index only the first N documents (default all)")
    n.add_argument("--shard-docs", type=int, default=256, help="documents per resumable shard (default 256)")
    n.set_defaults(func=run_neurons)

    ft = sub.add_parser("features", help="feature index of a sparse dictionary (SAE / transcoder) + role purity",
                        description="Index the top-k activating tokens of every feature of the dictionary --dict DIR "
                                    "(the neuron index's queries, layer 0 = the dictionary) into DIR/index; resumable.")
    _common(ft)
    ft.add_argument("--dict", required=True, type=Path, metavar="DIR",
                    help="dictionary folder (cfg.json + weights), e.g. RUN/analysis/dictionaries/demo-transcoder")
    ft.add_argument("--k", type=int, default=20, help="top activations kept per feature (default 20)")
    ft.add_argument("--seq-len", type=int, default=None, help="window length in tokens (default min(n_ctx, 256))")
    ft.add_argument("--max-docs", type=int, default=None, help="index only the first N documents (default all)")
    ft.add_argument("--shard-docs", type=int, default=256, help="documents per resumable shard (default 256)")
    ft.set_defaults(func=run_features)

    h = sub.add_parser("heads", help="per-head attention metrics + local/semantic/mixed",
                       description="Measure every attention head over a corpus sample and classify it.")
    _common(h)
    h.add_argument("--n-samples", type=int, default=64, help="documents in the sample (default 64)")
    h.add_argument("--seq-len", type=int, default=128, help="tokens per sampled window (default 128)")
    h.set_defaults(func=run_heads)

    f = sub.add_parser("find", help="neurons that fire selectively on a word (needs `analyze neurons` first)",
                       description="Rank neurons by how selectively they fire on WORDS (case-insensitive, whole words; "
                                   "several words are alternatives: `find RUN dog dogs`): mean activation on the word's "
                                   "occurrences in the indexed corpus vs. elsewhere, in units of the neuron's spread.")
    f.add_argument("model", help="run directory (or the model the --index was built from)")
    f.add_argument("words", nargs="+", help="word(s) to search for")
    f.add_argument("--index", default=None, help="neuron index folder (default: MODEL/analysis/neurons)")
    f.add_argument("--dict", default=None, type=Path, metavar="DIR",
                   help="search the features of this dictionary instead (needs `analyze features MODEL --dict DIR`)")
    f.add_argument("--top", type=int, default=20, help="neurons listed (default 20)")
    f.add_argument("--device", default="cpu", help="torch device (default cpu)")
    f.add_argument("--backend", choices=("native", "bridge"), default="native", help="how to load an HF model (default native)")
    f.set_defaults(func=run_find)

    e = sub.add_parser("emergence", help="neuron roles and head classes at every saved checkpoint",
                       description="Analyse every snapshot/checkpoint of a run on the same documents (cached per "
                                   "step; a rerun only analyses new ones) and plot the curves against training tokens.")
    _common(e)
    e.add_argument("--max-docs", type=int, default=200, help="documents indexed per checkpoint (default 200)")
    e.add_argument("--n-samples", type=int, default=32, help="documents in each head sample (default 32)")
    e.add_argument("--seq-len", type=int, default=128, help="tokens per head-sample window (default 128)")
    e.set_defaults(func=run_emergence)

    c = sub.add_parser("compare", help="two models side by side",
                       description="Neuron purity and head classes of two models on the same documents.")
    _common(c)
    c.add_argument("model_b", help="second model (run dir, HF folder or hub name such as gpt2-xl)")
    c.add_argument("--max-docs", type=int, default=500, help="documents used for each model's index (default 500)")
    c.add_argument("--n-samples", type=int, default=64, help="documents in the head sample (default 64)")
    c.set_defaults(func=run_compare)


def _common(p) -> None:
    p.add_argument("model", help="run directory, checkpoint, local HF model folder or hub name")
    p.add_argument("--corpus", default=None,
                   help="tokenized corpus folder, or a .txt/.jsonl file/folder of documents "
                        "(default for a run directory: the training corpus it was trained on, RUN/data/train)")
    p.add_argument("--out", default=None, help="output folder (default: MODEL/analysis/<analysis> for a run dir)")
    p.add_argument("--batch-size", type=int, default=16, help="windows per forward pass (default 16)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--backend", choices=("native", "bridge"), default="native",
                   help="for HF checkpoints: our own model (native, default) or TransformerLens's TransformerBridge")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _load(spec: str, device: str, backend: str = "native"):
    import tinyinterp

    return tinyinterp.load(spec, device=device, backend=backend).eval()


def _out_dir(args, subdir: str) -> Path:
    if args.out:
        return Path(args.out)
    if rundir.is_run_dir(Path(args.model)):
        return Path(args.model) / ANALYSIS_DIR / subdir
    raise TinyinterpError(f"{args.model}: not a run directory, so pass --out DIR for the results")


def _default_corpus(model_spec: str) -> str:
    run_corpus = corpus_dir(model_spec)  # where `tinyinterp train` leaves the tokenized training corpus
    if rundir.is_run_dir(Path(model_spec)) and run_corpus.is_dir():
        return str(run_corpus)
    raise TinyinterpError(f"{model_spec}: no training corpus at {run_corpus}; pass --corpus FILE_OR_DIR")


def _corpus(spec: str | None, model, out: Path, model_spec: str):
    from tinyinterp.data.corpus import META_FILE, TokenizedCorpus, iter_documents, tokenize_corpus

    path = Path(spec if spec is not None else _default_corpus(model_spec))
    if path.is_dir() and (path / META_FILE).is_file():
        return TokenizedCorpus.open(path)
    if model.tokenizer is None:
        raise TinyinterpError(f"{spec}: the model has no tokenizer to tokenize these documents; pass a tokenized corpus folder")
    target = out / f"corpus_{model.tokenizer.fingerprint()[:12]}"
    if (target / META_FILE).is_file():
        return TokenizedCorpus.open(target)
    return tokenize_corpus(iter_documents(path), model.tokenizer, target, source=str(path))


def _retokenized(corpus, model_a, model_b, out: Path, max_docs: int | None):
    """The same documents for a model with another tokenizer: decode with A's (exact round trip), encode with B's."""
    from tinyinterp.data.corpus import META_FILE, TokenizedCorpus, tokenize_corpus

    if model_a.tokenizer is None or model_b.tokenizer is None:
        raise TinyinterpError("comparing models with different tokenizers needs both models to have a tokenizer")
    target = out / f"corpus_{model_b.tokenizer.fingerprint()[:12]}"
    if (target / META_FILE).is_file():
        return TokenizedCorpus.open(target)
    n_docs = corpus.n_docs if max_docs is None else min(max_docs, corpus.n_docs)
    docs = (model_a.tokenizer.decode(corpus.document(i).tolist()) for i in range(n_docs))
    return tokenize_corpus(docs, model_b.tokenizer, target, source=f"{corpus.source} (re-tokenized)")


def run_neurons(args) -> int:
    from tinyinterp.interp.categories import neuron_purity
    from tinyinterp.interp.neuron_index import NeuronIndexConfig, build_neuron_index

    model = _load(args.model, args.device, args.backend)
    out = _out_dir(args, NEURONS_SUBDIR)
    corpus = _corpus(args.corpus, model, out, args.model)
    cfg = NeuronIndexConfig(k=args.k, batch_size=args.batch_size, seq_len=args.seq_len, shard_docs=args.shard_docs,
                            max_docs=args.max_docs, device=args.device)
    index = build_neuron_index(model, corpus, out, cfg, progress=not args.no_progress)
    purity = neuron_purity(index, model.tokenizer, corpus)
    purity.save(out)
    print(f"neuron index: {index.meta['n_tokens']} tokens -> {out}")
    print(purity.layer_summary()[["layer", "mean_purity", "mean_type_purity", "share_role"]].to_string(index=False))
    return 0


def run_features(args) -> int:
    from tinyinterp.interp.categories import neuron_purity
    from tinyinterp.interp.feature_index import build_feature_index
    from tinyinterp.interp.neuron_index import NeuronIndexConfig
    from tinyinterp.interp.units import FeatureUnits
    from tinyinterp.runs.layout import feature_index_dir

    model = _load(args.model, args.device, args.backend)
    FeatureUnits.load(args.dict, model)  # one line before any work: not a dictionary, another model, hook missing
    out = Path(args.out) if args.out else feature_index_dir(args.dict)
    corpus = _corpus(args.corpus, model, out, args.model)
    cfg = NeuronIndexConfig(k=args.k, batch_size=args.batch_size, seq_len=args.seq_len, shard_docs=args.shard_docs,
                            max_docs=args.max_docs, device=args.device)
    index = build_feature_index(model, corpus, args.dict, cfg, out_dir=out, progress=not args.no_progress)
    purity = neuron_purity(index, model.tokenizer, corpus)
    purity.save(out)
    alive = int((index.tensors["frac_active"] > 0).sum())
    print(f"feature index: {index.n_features} features ({alive} active), {index.meta['n_tokens']} tokens -> {out}")
    print(purity.layer_summary()[["layer", "mean_purity", "mean_type_purity", "share_role"]].to_string(index=False))
    return 0


def run_heads(args) -> int:
    from tinyinterp.interp.heads import HeadConfig, analyze_heads

    model = _load(args.model, args.device, args.backend)
    out = _out_dir(args, HEADS_SUBDIR)
    corpus = _corpus(args.corpus, model, out, args.model)
    result = analyze_heads(model, corpus, HeadConfig(n_samples=args.n_samples, seq_len=args.seq_len,
                                                      batch_size=args.batch_size, device=args.device),
                           progress=not args.no_progress)
    result.save(out)
    print(f"heads -> {out}: " + ", ".join(f"{c} {n}" for c, n in result.counts().items()))
    return 0


def run_find(args) -> int:
    from tinyinterp.interp.neuron_index import NeuronIndex

    if args.dict is not None:
        from tinyinterp.interp.feature_index import FeatureIndex

        index = FeatureIndex.load(args.dict)
    else:
        index_dir = Path(args.index) if args.index else Path(args.model) / ANALYSIS_DIR / NEURONS_SUBDIR
        if not (index_dir / "meta.json").is_file():
            raise TinyinterpError(f"{index_dir}: no neuron index; run `tinyinterp analyze neurons {args.model}` first or pass --index")
        index = NeuronIndex.load(index_dir)
    model = _load(args.model, args.device, args.backend)
    frame = index.find_neurons(args.words, model, top=args.top)
    print(f"{frame.attrs.get('n_occurrences', '?')} occurrences of {frame.attrs.get('variants', args.words)} in the indexed corpus")
    print(frame.to_string(index=False))
    return 0


def run_emergence(args) -> int:
    from tinyinterp.interp.emergence import EmergenceConfig, analyze_emergence

    run = Path(args.model)
    if not rundir.is_run_dir(run):
        raise TinyinterpError(f"{run}: emergence needs a run directory (config.json + model.safetensors + checkpoints)")
    model = _load(args.model, args.device, args.backend)
    out = _out_dir(args, EMERGENCE_SUBDIR)
    corpus = _corpus(args.corpus, model, out, args.model)
    config = EmergenceConfig(max_docs=args.max_docs, n_samples=args.n_samples, seq_len=args.seq_len,
                             batch_size=args.batch_size, device=args.device)
    result = analyze_emergence(run, corpus, config, out_dir=out, model=model, progress=not args.no_progress)
    frame = result.to_frame()
    print(frame[["step", "tokens", "role_share", "mean_type_purity", "local", "semantic", "mixed"]].to_string(index=False))
    print(f"emergence -> {out} (plot: {out / 'emergence.png'})")
    return 0


def run_compare(args) -> int:
    from tinyinterp.interp.compare import compare
    from tinyinterp.interp.heads import HeadConfig
    from tinyinterp.interp.neuron_index import NeuronIndexConfig

    model_a, model_b = _load(args.model, args.device, args.backend), _load(args.model_b, args.device, args.backend)
    out = _out_dir(args, COMPARE_SUBDIR)
    if not args.out:  # inside the run dir: one folder per pair
        out = out / f"{Path(args.model).name}__vs__{Path(args.model_b).name}"
    fp_a = model_a.tokenizer.fingerprint() if model_a.tokenizer is not None else None
    fp_b = model_b.tokenizer.fingerprint() if model_b.tokenizer is not None else None
    corpus_a = _corpus(args.corpus, model_a, out, args.model)
    corpus_b = corpus_a if fp_a == fp_b else _retokenized(corpus_a, model_a, model_b, out, args.max_docs)
    result = compare(model_a, model_b, corpus_a, corpus_b=corpus_b, work_dir=out,
                     index_config=NeuronIndexConfig(max_docs=args.max_docs, batch_size=args.batch_size, device=args.device),
                     head_config=HeadConfig(n_samples=args.n_samples, batch_size=args.batch_size, device=args.device),
                     progress=not args.no_progress,
                     names=(Path(args.model.rstrip("/")).name or args.model, Path(args.model_b.rstrip("/")).name or args.model_b))
    result.save(out)
    print(result.format())
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run ``analyze …`` alone (tests); the full CLI is ``tinyinterp.cli.main``."""
    from tinyinterp.cli import main as cli_main

    return cli_main(["analyze", *(argv or [])])
