"""Two models side by side: neuron purity per layer and head classes (e.g. ours vs. GPT-2 XL).

``compare`` runs the same path on both models: build the neuron index (:mod:`.neuron_index`), score
purity (:mod:`.categories`), classify heads (:mod:`.heads`). Models with different tokenizers need a
corpus each: pass the documents as texts (they are tokenized with each model's tokenizer into
``work_dir``), or a ``TokenizedCorpus`` per model (``corpus_b``). Each model's full results stay in
``work_dir/<label>/`` (``neurons/``, ``heads/``) so they can be browsed later; the
:class:`ComparisonResult` keeps the summaries and saves as one ``comparison.json``.

    >>> result = compare(ours, tinyinterp.load("gpt2-xl"), stories, work_dir="runs/demo/analysis/compare/work")
    >>> print(result.format()); result.save("runs/demo/analysis/compare/ours__vs__gpt2-xl")
"""

from __future__ import annotations

import logging
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tinyinterp.io.atomic import atomic_write_json
from tinyinterp.interp.categories import PurityResult, neuron_purity
from tinyinterp.interp.heads import HEAD_CLASSES, HeadConfig, HeadResult, analyze_heads
from tinyinterp.interp.inputs import model_name
from tinyinterp.interp.neuron_index import NeuronIndexConfig, build_neuron_index
from tinyinterp.runs.rundir import read_json

log = logging.getLogger(__name__)

COMPARISON_FILE = "comparison.json"


@dataclass
class ModelProfile:
    """What the comparison keeps of one model."""

    name: str
    n_layers: int
    d_mlp: int
    n_heads: int
    purity_by_layer: list[dict]
    """``PurityResult.layer_summary()`` rows."""
    purity_histogram: list[list[int]]
    chance_purity: float
    mean_purity: float
    mean_type_purity: float
    share_role: float
    """Share of all neurons that are role neurons (type purity >= 0.8 over >= 3 distinct tokens)."""
    head_counts: dict[str, int]
    head_class: list[list[str]]
    top_neurons: list[dict] = field(default_factory=list)

    @classmethod
    def from_results(cls, model, purity: PurityResult, heads: HeadResult, name: str | None = None) -> "ModelProfile":
        """The summary of one model's results; ``name`` labels it (default: the model's display name)."""
        top = purity.top(10)
        return cls(
            name=name or model_name(model), n_layers=model.cfg.n_layers, d_mlp=model.cfg.d_mlp, n_heads=model.cfg.n_heads,
            purity_by_layer=purity.layer_summary().to_dict("records"), purity_histogram=purity.histogram(),
            chance_purity=purity.chance_purity, mean_purity=float(np.nanmean(purity.purity)),
            mean_type_purity=float(np.nanmean(purity.type_purity)), share_role=float(purity.role_mask().mean()),
            head_counts=heads.counts(), head_class=heads.head_class.tolist(),
            top_neurons=[{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()} for row in top.to_dict("records")],
        )


@dataclass
class ComparisonResult:
    a: ModelProfile
    b: ModelProfile
    corpus: str = ""

    def to_frame(self) -> pd.DataFrame:
        """One row per (model, layer) with the purity summary and head-class counts of that layer."""
        rows = []
        for p in (self.a, self.b):
            for layer, summary in enumerate(p.purity_by_layer):
                classes = p.head_class[layer]
                rows.append({"model": p.name, **summary, **{f"heads_{c}": classes.count(c) for c in HEAD_CLASSES}})
        return pd.DataFrame(rows)

    def format(self) -> str:
        lines = [f"{'':28}{self.a.name[:24]:>26}{self.b.name[:24]:>26}"]

        def row(label, fa, fb):
            lines.append(f"{label:28}{fa:>26}{fb:>26}")

        row("layers x neurons", f"{self.a.n_layers} x {self.a.d_mlp}", f"{self.b.n_layers} x {self.b.d_mlp}")
        row("mean purity (chance)", f"{self.a.mean_purity:.3f} ({self.a.chance_purity:.3f})",
            f"{self.b.mean_purity:.3f} ({self.b.chance_purity:.3f})")
        row("mean type purity", f"{self.a.mean_type_purity:.3f}", f"{self.b.mean_type_purity:.3f}")
        row("role neurons", f"{100 * self.a.share_role:.1f}%", f"{100 * self.b.share_role:.1f}%")
        for c in HEAD_CLASSES:
            row(f"{c} heads", str(self.a.head_counts[c]), str(self.b.head_counts[c]))
        for p in (self.a, self.b):
            lines.append(f"\n{p.name}: mean purity / role share per layer")
            lines.append("  " + "  ".join(f"L{r['layer']}:{r['mean_purity']:.2f}/{100 * r['share_role']:.0f}%" for r in p.purity_by_layer))
            for n in p.top_neurons[:5]:
                lines.append(f"  L{n['layer']} N{n['neuron']:<5} {n['category']:<12} type purity {n['type_purity']:.2f}  {n['top_tokens']}")
        return "\n".join(lines)

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / COMPARISON_FILE
        atomic_write_json(path, {"a": asdict(self.a), "b": asdict(self.b), "corpus": self.corpus})
        return path

    @classmethod
    def load(cls, directory: str | Path) -> "ComparisonResult":
        d = read_json(Path(directory) / COMPARISON_FILE)
        return cls(ModelProfile(**d["a"]), ModelProfile(**d["b"]), d.get("corpus", ""))


def _safe_label(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "model"


def analyze_model(model, corpus, out_dir: Path, index_config: NeuronIndexConfig | None = None,
                  head_config: HeadConfig | None = None, progress: bool = True) -> tuple[PurityResult, HeadResult]:
    """Neuron index + purity (``out_dir/neurons``) and heads (``out_dir/heads``) of one model, saved."""
    index = build_neuron_index(model, corpus, out_dir / "neurons", index_config, progress=progress)
    purity = neuron_purity(index, model.tokenizer, corpus)
    purity.save(out_dir / "neurons")
    heads = analyze_heads(model, corpus, head_config, progress=progress)
    heads.save(out_dir / "heads")
    return purity, heads


def _corpus_for(model, corpus, work: Path):
    if isinstance(corpus, (list, tuple)):
        from tinyinterp.data.corpus import tokenize_corpus

        fp = model.tokenizer.fingerprint()[:12]
        return tokenize_corpus(corpus, model.tokenizer, work / f"corpus_{fp}", progress=False, source="compare")
    return corpus


def profile_names(name_a: str, name_b: str) -> tuple[str, str]:
    """Labels for the two sides: as given, or ``"<name> (A)"`` / ``"<name> (B)"`` when they are equal
    (two runs of one preset are both called e.g. ``tinystories-1m``; a saved result must tell them apart)."""
    if name_a != name_b:
        return name_a, name_b
    return f"{name_a} (A)", f"{name_b} (B)"


def compare(model_a, model_b, corpus, corpus_b=None, work_dir: str | Path | None = None,
            index_config: NeuronIndexConfig | None = None, head_config: HeadConfig | None = None,
            progress: bool = True, names: tuple[str, str] | None = None) -> ComparisonResult:
    """Compare ``model_a`` and ``model_b`` on ``corpus`` (texts, or a TokenizedCorpus; ``corpus_b`` for B).

    ``names`` labels the two sides (e.g. the run directories' names); by default the models' display
    names, made distinct by :func:`profile_names` when they are equal."""
    tmp = None
    if work_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="tinyinterp-compare-")
        work_dir = tmp.name
    work = Path(work_dir)
    try:
        profiles = []
        display = profile_names(*(names or (model_name(model_a), model_name(model_b))))
        labels = [_safe_label(model_name(model_a)), _safe_label(model_name(model_b))]
        if labels[0] == labels[1]:
            labels = [labels[0] + "_a", labels[1] + "_b"]
        sides = ((model_a, corpus, labels[0], display[0]), (model_b, corpus_b if corpus_b is not None else corpus, labels[1], display[1]))
        for model, c, label, shown in sides:
            log.info("analyzing %s", label)
            c = _corpus_for(model, c, work)
            purity, heads = analyze_model(model, c, work / label, index_config, head_config, progress)
            profiles.append(ModelProfile.from_results(model, purity, heads, name=shown))
        source = "texts" if isinstance(corpus, (list, tuple)) else str(getattr(corpus, "path", ""))
        return ComparisonResult(profiles[0], profiles[1], corpus=source)
    finally:
        if tmp is not None:
            tmp.cleanup()


def read_texts(path: str | Path, max_docs: int | None = None) -> list[str]:
    """Documents of a text file/folder (via the corpus readers), for comparing models with different tokenizers."""
    from tinyinterp.data.corpus import iter_documents

    return list(iter_documents(Path(path), max_docs=max_docs))
