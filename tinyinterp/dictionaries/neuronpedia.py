"""Export a dictionary's features, top activations and explanations in Neuronpedia's import format.

Neuronpedia (github.com/hijohnnylin/neuronpedia) imports a *source* (one dictionary at one layer) from a
folder of gzipped JSON-lines files, one row per database row, as its own ``export-data.py`` writes them and
``convert-saedashboard-to-neuronpedia-export.py`` produces from SAEDashboard output::

    OUT/<modelId>/<sourceId>/                 sourceId = "<layer>-<source set>", e.g. "1-tinyinterp-sae-resid-post-w1024"
        model.jsonl  sourceset.jsonl  source.jsonl          one row each (Model, SourceSet, Source)
        features/batch-<i>.jsonl.gz                          Neuron rows, 1024 features a batch
        activations/batch-<i>.jsonl.gz                       Activation rows: each feature's top examples
        explanations/batch-<i>.jsonl.gz                      Explanation rows (when the features were explained)

The rows carry the fields of Neuronpedia's ``db_models`` that we have data for; every other field is left to
its default (empty list / null):

* **feature** (``Neuron``): ``modelId``, ``layer`` (= the source id), ``index`` (the feature id, a string),
  ``maxActApprox`` (the index's max), ``frac_nonzero`` (share of indexed tokens where it fired),
  ``pos_str``/``pos_values`` and ``neg_str``/``neg_values`` (tokens its decoder direction promotes /
  suppresses through the unembedding: the index's logit effects; empty for hooks that do not write the
  residual stream), ``freq_hist_data_bar_values``/``_heights`` (the index's activation histogram, positive
  bins: bin centre, token count), ``vector`` + ``hookName`` + ``hasVector`` (the decoder row at ``hook_out``,
  what Neuronpedia steers with; ``vectorDefaultSteerStrength`` = ``maxActApprox`` as its converter sets).
* **activation**: one row per top example of the feature index: ``tokens`` (token strings of the window
  around the example, within its document), ``values`` (the feature's activation on each of them, from the
  index's re-run of the window), ``maxValue``/``maxValueTokenIndex``/``minValue`` (of ``values``, as
  Neuronpedia's converter computes them), ``qualifyingTokenIndex`` (the example's own token, whose value
  is the index's stored top value), ``dataIndex`` (the corpus document). ``id`` is a stable hash of
  (model, source, feature, rank), so exporting twice gives the same files.
* **explanation**: one row per explained feature and explainer: ``description`` (the explanation),
  ``explanationModelName`` (``baseline`` or the LLM), ``typeName`` (``tinyinterp-<explainer slug>``),
  ``notes`` (our simulation score), ``authorId`` = the creator.

The folder is written under a temporary name beside the target and renamed into place at the end; an
existing target is refused (nothing is overwritten).

    >>> export_neuronpedia(dict_dir, "np-export", model=model)      # -> OUT/<modelId>/<sourceId>
"""

from __future__ import annotations

import datetime
import gzip
import hashlib
import json
import logging
import math
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from tinyinterp.dictionaries.config import DictionaryError
from tinyinterp.errors import TinyinterpError

log = logging.getLogger(__name__)

BATCH = 1024
"""Rows per batch file (Neuronpedia's export uses 1024 features a batch)."""
SUBDIRS = ("features", "activations", "explanations")


@dataclass
class NeuronpediaIds:
    model_id: str
    source_set: str
    layer: int
    creator: str = "tinyinterp"

    @property
    def source_id(self) -> str:
        return f"{self.layer}-{self.source_set}"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "model"


def default_ids(coder, model_name: str | None = None, creator: str = "tinyinterp") -> NeuronpediaIds:
    """Neuronpedia ids for ``coder``: model id from its model name, source set from kind, hook and width."""
    cfg = coder.cfg
    match = re.match(r"^blocks\.(\d+)\.", cfg.hook_out)
    layer = int(match.group(1)) if match else 0
    hook = cfg.hook_out.split(".")[-1].removeprefix("hook_")
    source_set = _slug(f"tinyinterp-{cfg.kind}-{hook}-w{cfg.d_sae}")
    name = model_name or cfg.model_name or "model"
    return NeuronpediaIds(_slug(Path(str(name)).name), source_set, layer, creator)


def _stable_id(*parts) -> str:
    return hashlib.sha1("/".join(map(str, parts)).encode()).hexdigest()[:25]


def _finite(x: float) -> float:
    return float(x) if math.isfinite(x) else 0.0  # Neuronpedia's JSON has no NaN / inf


def _write_batches(folder: Path, rows: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(0, max(len(rows), 1), BATCH):
        chunk = rows[i: i + BATCH]
        if not chunk:
            break
        data = "".join(json.dumps(row, allow_nan=False) + "\n" for row in chunk).encode("utf-8")
        (folder / f"batch-{i // BATCH}.jsonl.gz").write_bytes(gzip.compress(data, compresslevel=5))


def _feature_row(index, coder, f: int, ids: NeuronpediaIds, created: str) -> dict:
    max_act = _finite(float(index.tensors["max"][0, f]))
    row = {"modelId": ids.model_id, "layer": ids.source_id, "index": str(f), "creatorId": ids.creator,
           "createdAt": created, "maxActApprox": max_act,
           "frac_nonzero": _finite(float(index.tensors["frac_active"][0, f])),
           "hasVector": True, "vector": [float(v) for v in coder.W_dec[f].tolist()], "vectorLabel": None,
           "hookName": coder.cfg.hook_out, "vectorDefaultSteerStrength": max_act,
           "pos_str": [], "pos_values": [], "neg_str": [], "neg_values": [],
           "freq_hist_data_bar_heights": [], "freq_hist_data_bar_values": []}
    try:
        effects = index.logit_effects(0, f)
    except TinyinterpError:  # a dictionary whose output is not in the residual stream has no logit effects
        effects = None
    if effects is not None:
        for key, name in (("pos", "promoted"), ("neg", "suppressed")):
            row[f"{key}_str"] = effects[name]["token"].tolist()
            row[f"{key}_values"] = [_finite(v) for v in effects[name]["effect"].tolist()]
    try:
        hist = index.activation_histogram(0, f)
    except TinyinterpError:
        hist = None
    if hist is not None:
        positive = hist[(hist.lo > 0) & hist.hi.map(math.isfinite) & (hist["count"] > 0)]
        row["freq_hist_data_bar_values"] = [float((lo + hi) / 2) for lo, hi in zip(positive.lo, positive.hi)]
        row["freq_hist_data_bar_heights"] = [float(c) for c in positive["count"]]
    return row


def _activation_rows(index, f: int, ids: NeuronpediaIds, created: str, model, k: int | None, context: int) -> list[dict]:
    rows = []
    for rank, ex in enumerate(index.top_examples(0, f, k=k, context=context, model=model)):
        values = [_finite(v) for v in ex.activations]
        values[ex.center] = _finite(ex.activation)  # the index's stored value (the re-run agrees to float rounding)
        top = max(range(len(values)), key=values.__getitem__)
        rows.append({"id": _stable_id(ids.model_id, ids.source_id, f, rank), "modelId": ids.model_id,
                     "layer": ids.source_id, "index": str(f), "tokens": list(ex.token_strs), "values": values,
                     "maxValue": values[top], "maxValueTokenIndex": top, "minValue": min(values),
                     "qualifyingTokenIndex": ex.center, "creatorId": ids.creator, "createdAt": created,
                     "dataIndex": str(ex.doc), "dataSource": None, "lossValues": [], "logitContributions": None,
                     "binMin": None, "binMax": None, "binContains": None,
                     "dfaValues": [], "dfaTargetIndex": None, "dfaMaxValue": None})
    return rows


def _explanation_rows(dict_dir: Path, ids: NeuronpediaIds, created: str, n_features: int) -> list[dict]:
    from tinyinterp.explain.results import load_explanations

    frame = load_explanations(dict_dir)
    rows = []
    for rec in frame.sort_values(["neuron", "explainer"]).itertuples(index=False):
        f = int(rec.neuron)
        if not 0 <= f < n_features or not isinstance(rec.explanation, str):
            continue
        score = rec.score if isinstance(rec.score, (int, float)) and math.isfinite(rec.score) else None
        model_name = rec.model if isinstance(rec.model, str) and rec.model else rec.explainer
        rows.append({"id": _stable_id(ids.model_id, ids.source_id, f, rec.explainer), "modelId": ids.model_id,
                     "layer": ids.source_id, "index": str(f), "description": rec.explanation,
                     "authorId": ids.creator, "typeName": f"tinyinterp-{rec.explainer}",
                     "explanationModelName": model_name, "embedding": None, "triggeredById": None,
                     "notes": None if score is None else f"tinyinterp simulation score {score:.4f}",
                     "createdAt": created})
    return rows


def export_neuronpedia(dict_dir: str | Path, out: str | Path, model, ids: NeuronpediaIds | None = None,
                       k: int | None = None, context: int = 24, progress: bool = True) -> Path:
    """Write ``dict_dir``'s features (its feature index + explanations) under ``out``; returns the source folder.

    ``model`` is the model the index was built on (the windows of the top examples are re-run through it
    for the per-token values). ``k``: top examples per feature (default: all the index holds).
    """
    from tqdm import tqdm

    from tinyinterp.dictionaries.formats import load_dictionary
    from tinyinterp.interp.feature_index import FeatureIndex

    dict_dir = Path(dict_dir)
    coder = load_dictionary(dict_dir)
    index = FeatureIndex.load(dict_dir)
    if index.n_features != coder.cfg.d_sae:
        raise DictionaryError(f"{dict_dir}: the feature index has {index.n_features} features, the dictionary "
                              f"{coder.cfg.d_sae}; rebuild it with `tinyinterp analyze features`")
    ids = ids or default_ids(coder)
    target = Path(out) / ids.model_id / ids.source_id
    if target.exists():
        raise DictionaryError(f"--out {target} exists; remove it or export to another folder")
    created = datetime.datetime.now(datetime.timezone.utc).isoformat()
    n = coder.cfg.d_sae
    features, activations = [], []
    for f in tqdm(range(n), desc="neuronpedia export", unit="feature", disable=not progress):
        features.append(_feature_row(index, coder, f, ids, created))
        activations.extend(_activation_rows(index, f, ids, created, model, k, context))
    explanations = _explanation_rows(dict_dir, ids, created, n)

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        cfg = model.cfg
        one_row = {
            "model.jsonl": {"id": ids.model_id, "instruct": False, "creatorId": ids.creator,
                            "displayName": ids.model_id, "displayNameShort": ids.model_id, "dimension": cfg.d_model,
                            "layers": cfg.n_layers, "neuronsPerLayer": cfg.d_mlp, "visibility": "PUBLIC",
                            "createdAt": created, "updatedAt": created},
            "sourceset.jsonl": {"modelId": ids.model_id, "name": ids.source_set, "creatorId": ids.creator,
                                "creatorName": ids.creator, "hasDashboards": True, "visibility": "PUBLIC",
                                "description": f"{coder.cfg.kind} {coder.cfg.hook_in} -> {coder.cfg.hook_out}, "
                                               f"{n} features, k {coder.cfg.k} (tinyinterp)",
                                "type": coder.cfg.kind, "createdAt": created},
            "source.jsonl": {"id": ids.source_id, "modelId": ids.model_id, "setName": ids.source_set,
                             "creatorId": ids.creator, "hasDashboards": True, "inferenceEnabled": False,
                             "visibility": "PUBLIC", "saelensConfig": json.dumps(json.loads(
                                 (dict_dir / "cfg.json").read_text(encoding="utf-8"))),
                             "num_tokens_in_prompt": int((index.meta.get("config") or {}).get("seq_len") or 0) or None,
                             "dataset": str(index.meta.get("corpus") or "") or None, "createdAt": created},
        }
        for name, row in one_row.items():
            (tmp / name).write_text(json.dumps(row) + "\n", encoding="utf-8")
        _write_batches(tmp / "features", features)
        _write_batches(tmp / "activations", activations)
        if explanations:
            _write_batches(tmp / "explanations", explanations)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("exported %d features, %d activations, %d explanations to %s", n, len(activations), len(explanations), target)
    return target


def read_neuronpedia(source_dir: str | Path) -> dict[str, list[dict]]:
    """The rows of an export folder: ``{"features": [...], "activations": [...], "explanations": [...]}``."""
    source_dir = Path(source_dir)
    out: dict[str, list[dict]] = {}
    for sub in SUBDIRS:
        rows: list[dict] = []
        for path in sorted((source_dir / sub).glob("batch-*.jsonl.gz"), key=lambda p: int(p.name.split("-")[1].split(".")[0])):
            rows.extend(json.loads(line) for line in gzip.decompress(path.read_bytes()).decode("utf-8").splitlines() if line)
        out[sub] = rows
    return out
