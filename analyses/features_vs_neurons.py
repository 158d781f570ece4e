"""Features vs neurons: per layer, explanation score and role purity of MLP neurons, SAE features and transcoder features.

The paper found GPT-2 XL's neurons less interpretable than a TinyStories model's; this asks whether sparse
dictionary features change that. For each model (one of our runs, an imported GPT-2 folder, anything
``tinyinterp.load`` takes) and each layer ``l`` it compares three kinds of unit at the same place, the MLP:

- ``neuron``: the MLP's hidden units (``blocks.l.mlp.hook_post``), from the neuron index;
- ``sae``: features of a TopK SAE on the MLP's output (``blocks.l.hook_mlp_out``);
- ``transcoder``: features of a TopK transcoder that replaces the MLP (``ln2.hook_normalized`` -> ``hook_mlp_out``).

The dictionaries are trained here with :mod:`tinyinterp.dictionaries` (or reused when the folder holds one);
all three kinds then go through the library's ONE unit path: the (neuron/feature) index, the token-category
purity of ``tinyinterp.interp.categories`` and the explain -> simulate -> score loop of ``tinyinterp.explain``
(``--explainer baseline``: offline and deterministic, the default; ``--explainer llm`` with the LLM options
of ``tinyinterp explain``; either way the same for every kind, so the comparison is fair). Per layer and kind: mean / median explanation score
(with its standard error) and the share >= 0.5 over ``--units`` sampled live units, mean type ("role") purity and the share of role
units (type purity >= 0.8 over >= 3 distinct top tokens in a real category) over all live units, and the
dictionary's last training FVU.

Writes ``features_vs_neurons.json`` (config, one row per model x layer x kind) and ``features_vs_neurons.png``
(score and role share by relative depth) into ``--out``; indexes, dictionaries and explanations go under
``--out/<label>/`` (re-running reuses what is there).

    python -m analyses.features_vs_neurons runs/demo --gpt2 /models/gpt2 --texts ../shared/data/tinystories/train-v2-gpt4-head.txt
    python -m analyses.features_vs_neurons runs/demo --layers 0,1 --width 512 --k 16 --dict-tokens 50000 --max-docs 200 --units 32
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

log = logging.getLogger(__name__)

KINDS = ("neuron", "sae", "transcoder")
JSON_FILE = "features_vs_neurons.json"
PNG_FILE = "features_vs_neurons.png"


@dataclass
class StudyConfig:
    layers: list[int] | None = None
    """Layers to study (None: all)."""
    width: int | None = None
    """Features per dictionary (None: the MLP's width, d_mlp: as many features as neurons)."""
    k: int = 16
    dict_tokens: int = 100_000
    """Activation vectors each dictionary trains on."""
    batch_tokens: int = 1024
    max_docs: int = 300
    """Documents indexed (neurons and features alike)."""
    index_k: int = 20
    """Top examples kept per unit."""
    units: int = 48
    """Live units explained per layer and kind (a seeded random sample)."""
    seq_len: int = 128
    seed: int = 0
    explainer: str = "baseline"
    """"baseline" (offline) or "llm" (an OpenAI-compatible server: ``--base-url``/``--model``, key from the env)."""
    progress: bool = False
    extra: dict = field(default_factory=dict)


@dataclass
class Subject:
    label: str
    spec: str
    """What ``tinyinterp.load`` takes: a run directory, an HF folder, a hub name."""
    texts: str | None = None
    """Documents to index and train on (None: the run's training corpus)."""


# -- per model ---------------------------------------------------------------------------------------------
def _corpus(model, subject: Subject, out: Path):
    from tinyinterp.runs import layout as runlayout
    from tinyinterp.data.corpus import META_FILE, TokenizedCorpus, iter_documents, tokenize_corpus
    from tinyinterp.errors import TinyinterpError

    if subject.texts is None:
        path = runlayout.corpus_dir(Path(subject.spec), runlayout.TRAIN_SPLIT)
        if not (path / META_FILE).is_file():
            raise TinyinterpError(f"{subject.spec}: no training corpus at {path}; pass --texts FILE")
        return TokenizedCorpus.open(path)
    source = Path(subject.texts)
    if source.is_dir() and (source / META_FILE).is_file():
        return TokenizedCorpus.open(source)
    if model.tokenizer is None:
        raise TinyinterpError(f"{subject.spec}: the model has no tokenizer to tokenize --texts")
    target = out / f"corpus_{model.tokenizer.fingerprint()[:12]}"
    if (target / META_FILE).is_file():
        return TokenizedCorpus.open(target)
    return tokenize_corpus(iter_documents(source), model.tokenizer, target, progress=False, source=str(source))


def _train(model, corpus, kind: str, layer: int, cfg: StudyConfig, out: Path):
    from tinyinterp.dictionaries import DictionaryConfig, TrainConfig, load_dictionary, transcoder_hooks
    from tinyinterp.dictionaries.activations import hook_widths
    from tinyinterp.dictionaries.formats import CFG_FILE
    from tinyinterp.dictionaries.training import train_dictionary

    if (out / CFG_FILE).is_file():
        return load_dictionary(out)
    hook_in, hook_out = transcoder_hooks(layer) if kind == "transcoder" else (f"blocks.{layer}.hook_mlp_out",) * 2
    d_in, d_out = hook_widths(model, [hook_in, hook_out])
    width = cfg.width or model.cfg.d_mlp
    dcfg = DictionaryConfig(kind, hook_in, hook_out, d_in, d_out, width, min(cfg.k, width),
                            model_name=getattr(model, "name", "") or "")
    batch = min(cfg.batch_tokens, cfg.dict_tokens)
    train = TrainConfig(tokens=cfg.dict_tokens, batch_tokens=batch, buffer_tokens=max(4 * batch, 4096), seq_len=cfg.seq_len,
                        checkpoint_every=10_000, seed=cfg.seed + layer, dead_after_tokens=max(cfg.dict_tokens // 4, batch))
    return train_dictionary(model, corpus, dcfg, train, out, progress=cfg.progress)


def _last_fvu(dict_dir: Path) -> float:
    from tinyinterp.dictionaries.training import TRAIN_LOG
    from tinyinterp.io.jsonl import scan_jsonl

    rows = scan_jsonl(dict_dir / TRAIN_LOG).records if (dict_dir / TRAIN_LOG).is_file() else []
    return float(rows[-1]["fvu"]) if rows else float("nan")


def _sample(live: np.ndarray, n: int, seed: int) -> list[int]:
    ids = np.flatnonzero(live)
    if len(ids) > n:
        ids = np.sort(np.random.default_rng(seed).choice(ids, n, replace=False))
    return [int(i) for i in ids]


def _explain(model, index, layer_of_units: int, units: list[int], out: Path, cfg: StudyConfig,
             make_client=None) -> dict[int, float]:
    """Explanation scores of ``units`` of one layer of ``index`` (neuron or feature index). ``make_client()``
    gives the LLM client for ``cfg.explainer == "llm"`` (a fresh one per run: each runs its own event loop)."""
    from tinyinterp.explain.records import RecordConfig
    from tinyinterp.explain.results import load_explanations
    from tinyinterp.explain.runner import ExplainRunConfig, ExplainRunner

    if not units:
        return {}
    run_cfg = ExplainRunConfig(explainer=cfg.explainer, layers=[layer_of_units], neurons=[(layer_of_units, u) for u in units],
                               records=RecordConfig(seed=cfg.seed), seed=cfg.seed)
    client = make_client() if cfg.explainer == "llm" else None
    runner = ExplainRunner(model, index, run_cfg, out, client=client)
    runner.run()
    frame = load_explanations(out, explainer=runner.slug)
    frame = frame[frame["layer"] == layer_of_units]
    wanted = set(units)
    return {int(n): float(s) for n, s in zip(frame["neuron"], frame["score"]) if int(n) in wanted and s is not None}


def _row(label: str, layer: int, kind: str, purity, row_in_purity: int, live: np.ndarray, scores: dict[int, float],
         extra: dict) -> dict:
    tp = purity.type_purity[row_in_purity][live]
    role = purity.role_mask()[row_in_purity][live]
    values = np.array(list(scores.values()), dtype=float)
    values = values[np.isfinite(values)]
    return {"model": label, "layer": layer, "unit": kind, "n_units": int(len(live)), "n_live": int(live.sum()),
            "n_explained": int(len(values)),
            "score_mean": float(values.mean()) if len(values) else float("nan"),
            "score_median": float(np.median(values)) if len(values) else float("nan"),
            "score_sem": float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else float("nan"),
            "share_score_ge_0.5": float((values >= 0.5).mean()) if len(values) else float("nan"),
            "type_purity_mean": float(np.nanmean(tp)) if np.isfinite(tp).any() else float("nan"),
            "role_share": float(role.mean()) if len(role) else float("nan"),
            "chance_purity": float(purity.chance_purity), **extra}


def study_model(subject: Subject, cfg: StudyConfig, out: Path, make_client=None) -> dict:
    """Every layer x kind row of one model (see the module docstring)."""
    import tinyinterp
    from tinyinterp.errors import TinyinterpError
    from tinyinterp.interp.categories import neuron_purity
    from tinyinterp.interp.neuron_index import META_FILE, NeuronIndex, NeuronIndexConfig, build_neuron_index

    model = tinyinterp.load(subject.spec).eval()
    out.mkdir(parents=True, exist_ok=True)
    corpus = _corpus(model, subject, out)
    n_layers = model.cfg.n_layers
    layers = cfg.layers if cfg.layers is not None else list(range(n_layers))
    for layer in layers:
        if not 0 <= layer < n_layers:
            raise TinyinterpError(f"--layers: {subject.label} has layers 0..{n_layers - 1}, not {layer}")
    index_cfg = NeuronIndexConfig(k=cfg.index_k, max_docs=cfg.max_docs, seq_len=cfg.seq_len)
    ndir = out / "neurons"
    index = NeuronIndex.load(ndir, corpus=corpus) if (ndir / META_FILE).is_file() else \
        build_neuron_index(model, corpus, ndir, index_cfg, progress=cfg.progress)
    purity = neuron_purity(index)
    purity.save(ndir)
    rows = []
    for layer in layers:
        live = index.tensors["max"][layer].numpy() > 0
        scores = _explain(model, index, layer, _sample(live, cfg.units, cfg.seed + layer), out / "neuron_explanations", cfg, make_client)
        rows.append(_row(subject.label, layer, "neuron", purity, layer, live, scores, {}))
        for kind in ("sae", "transcoder"):
            ddir = out / "dictionaries" / kind / f"layer_{layer:02d}"
            coder = _train(model, corpus, kind, layer, cfg, ddir)
            fpurity, fscores, flive = feature_units(model, corpus, ddir, index_cfg, cfg, layer, make_client)
            rows.append(_row(subject.label, layer, kind, fpurity, 0, flive, fscores,
                             {"d_sae": coder.cfg.d_sae, "k": coder.cfg.k, "train_fvu": _last_fvu(ddir)}))
        log.info("%s layer %d done", subject.label, layer)
    return {"label": subject.label, "spec": subject.spec, "name": getattr(model, "name", None) or subject.spec,
            "n_layers": n_layers, "d_mlp": model.cfg.d_mlp, "d_model": model.cfg.d_model,
            "n_indexed_tokens": int(index.meta.get("n_tokens", 0) or 0), "rows": rows}


def feature_units(model, corpus, dict_dir: Path, index_cfg, cfg: StudyConfig, layer: int, make_client=None):
    """(purity, {feature: score}, live mask) of one dictionary, through the library's unit path: its feature
    index in ``<dict>/index`` (purity.json beside it) and its explanations in ``<dict>/explanations``."""
    from tinyinterp.interp.categories import neuron_purity
    from tinyinterp.interp.feature_index import FeatureIndex, build_feature_index
    from tinyinterp.interp.neuron_index import META_FILE
    from tinyinterp.runs.layout import feature_explanations_dir, feature_index_dir

    idir = feature_index_dir(dict_dir)
    if (idir / META_FILE).is_file():
        index = FeatureIndex.load(idir, corpus=corpus)
    else:
        index = build_feature_index(model, corpus, dict_dir, index_cfg, progress=cfg.progress)
    purity = neuron_purity(index)  # recomputed (cheap): purity.json rounds; saved for the app's feature pages
    purity.save(idir)
    live = index.tensors["max"][0].numpy() > 0
    scores = _explain(model, index, 0, _sample(live, cfg.units, cfg.seed + layer), feature_explanations_dir(dict_dir), cfg, make_client)
    return purity, scores, live


# -- output ------------------------------------------------------------------------------------------------
def plot(result: dict, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    styles = ["-", "--", ":", "-."]
    colors = {"neuron": "tab:gray", "sae": "tab:blue", "transcoder": "tab:orange"}
    for m, model in enumerate(result["models"]):
        for kind in KINDS:
            rows = [r for r in model["rows"] if r["unit"] == kind]
            depth = [(r["layer"] + 0.5) / model["n_layers"] for r in rows]
            for ax, key in zip(axes, ("score_mean", "role_share")):
                ax.plot(depth, [r[key] for r in rows], ls=styles[m % len(styles)], marker="o", color=colors[kind],
                        label=f"{model['label']} {kind}")
    axes[0].set_title(f"mean explanation score ({result['config']['explainer']} explainer)")
    axes[1].set_title("share of role units (type purity >= 0.8)")
    for ax in axes:
        ax.set_xlabel("relative depth (layer + 0.5) / n_layers")
        ax.set_xlim(0, 1)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def format_table(result: dict) -> str:
    head = (f"{'model':<12} {'layer':>5} {'unit':<10} {'live':>6} {'n':>4} {'score':>6} {'±sem':>5} {'>=.5':>5} {'purity':>6} "
            f"{'role':>5} {'fvu':>5}")
    lines = [head]
    for model in result["models"]:
        for r in model["rows"]:
            lines.append(f"{r['model']:<12} {r['layer']:>5} {r['unit']:<10} {r['n_live']:>6} {r['n_explained']:>4} "
                         f"{r['score_mean']:>6.3f} {r['score_sem']:>5.3f} {r['share_score_ge_0.5']:>5.2f} {r['type_purity_mean']:>6.3f} "
                         f"{r['role_share']:>5.2f} {r.get('train_fvu', float('nan')):>5.2f}")
    return "\n".join(lines)


def _finite(value):
    """JSON without NaN (null instead), so strict readers accept the file."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def run_study(subjects: list[Subject], cfg: StudyConfig, out: Path, make_client=None) -> dict:
    from tinyinterp.io.atomic import atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    result = {"config": asdict(cfg), "kinds": list(KINDS),
              "models": [study_model(s, cfg, out / s.label, make_client) for s in subjects]}
    plot(result, out / PNG_FILE)
    atomic_write_text(out / JSON_FILE, json.dumps(_finite(result), indent=1))
    return result


def main(argv: list[str] | None = None) -> int:
    from tinyinterp.cli.support import run_cli
    from tinyinterp.llm.options import add_llm_arguments

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", default=None, help="our run directory (its training corpus unless --texts)")
    parser.add_argument("--gpt2", default=None, help="a GPT-2 (or any other) model folder / hub name to compare (needs --texts)")
    parser.add_argument("--texts", default=None, help="documents (.txt/.jsonl file or folder, or a tokenized corpus) for every model")
    parser.add_argument("--labels", default="ours,gpt2", help="labels of the run and of --gpt2 (default ours,gpt2)")
    parser.add_argument("--layers", default=None, help="comma-separated layers (default all)")
    parser.add_argument("--width", type=int, default=None, help="features per dictionary (default d_mlp)")
    parser.add_argument("--k", type=int, default=16, help="TopK of the dictionaries (default 16)")
    parser.add_argument("--dict-tokens", type=int, default=100_000, help="training tokens per dictionary (default 100,000)")
    parser.add_argument("--batch-tokens", type=int, default=1024)
    parser.add_argument("--max-docs", type=int, default=300, help="documents indexed (default 300)")
    parser.add_argument("--index-k", type=int, default=20, help="top examples per unit (default 20)")
    parser.add_argument("--units", type=int, default=48, help="units explained per layer and kind (default 48)")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--explainer", choices=("baseline", "llm"), default="baseline",
                        help="baseline (offline, default) or llm (an OpenAI-compatible server, see the LLM options)")
    parser.add_argument("--out", default="figures/features_vs_neurons", help="output folder")
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    add_llm_arguments(parser)
    args = parser.parse_args(argv)
    return run_cli(lambda: _main(args))


def _main(args: argparse.Namespace) -> int:
    from tinyinterp.errors import TinyinterpError

    labels = args.labels.split(",")
    if len(labels) != 2 or not all(labels) or labels[0] == labels[1]:
        raise TinyinterpError(f"--labels {args.labels!r}: give two different names, e.g. ours,gpt2")
    subjects = []
    if args.run is not None:
        subjects.append(Subject(labels[0], args.run, args.texts))
    if args.gpt2 is not None:
        if args.texts is None:
            raise TinyinterpError("--gpt2 needs --texts: the documents both models are read on")
        subjects.append(Subject(labels[1], args.gpt2, args.texts))
    if not subjects:
        raise TinyinterpError("nothing to study: pass a run directory and/or --gpt2 DIR")
    try:
        layers = [int(x) for x in args.layers.split(",")] if args.layers else None
    except ValueError:
        raise TinyinterpError(f"--layers {args.layers!r}: expected comma-separated integers") from None
    cfg = StudyConfig(layers=layers, width=args.width, k=args.k, dict_tokens=args.dict_tokens, batch_tokens=args.batch_tokens,
                      max_docs=args.max_docs, index_k=args.index_k, units=args.units, seq_len=args.seq_len, seed=args.seed,
                      explainer=args.explainer, progress=args.progress)
    for name in ("k", "dict_tokens", "batch_tokens", "max_docs", "index_k", "units", "seq_len"):
        if getattr(cfg, name) < 1:
            raise TinyinterpError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(cfg, name)}")
    if cfg.width is not None and cfg.width < 1:
        raise TinyinterpError(f"--width must be a positive integer, got {cfg.width}")
    from tinyinterp.llm.options import client_from_args

    out = Path(args.out)
    result = run_study(subjects, cfg, out, make_client=lambda: client_from_args(args))
    print(format_table(result))
    print(f"wrote {out / PNG_FILE} and {out / JSON_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
