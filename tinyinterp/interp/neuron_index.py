"""Streaming neuron index: the top-k activating tokens of every MLP neuron, plus running statistics.

The corpus is cut into per-document windows (:func:`~tinyinterp.interp.inputs.document_windows`)
and streamed through the model in batches by the one activation pass
(:func:`~tinyinterp.interp.activations.iter_activations`, hooks on every ``blocks.{l}.mlp.hook_post``,
no activation cache). Each hook does a ``torch.topk`` over the batch and merges it with the running
top-k of all neurons at once (both vectorised over neurons), and folds the batch into running
mean/variance (Chan's parallel update, float64), max and count of tokens > 0. The pass stops the
forward after the last MLP, since nothing after it is needed. Documents are grouped into shards; after
each shard the whole state is written atomically to ``progress.safetensors`` so an interrupted build
resumes where it stopped and gives bit-identical results.

On-disk format (``out_dir``, by default ``run_dir/analysis/neurons/``):

- ``index.safetensors``: ``top_values`` f32 (L, N, k) sorted descending (``-inf`` where the corpus had
  fewer than k tokens), ``top_positions`` i64 (L, N, k) global offsets into ``corpus.tokens`` (-1 = none),
  ``top_tokens`` i32 and ``top_prev_tokens`` i32 (token before, -1 at a document start),
  ``mean``/``std``/``max``/``frac_active`` f32 (L, N); the activation distribution of
  :mod:`.neuron_distribution` (``hist_counts``, ``sample_positions``/``sample_values`` one example per
  histogram bin, ``bottom_values``/``bottom_positions`` the most negative activations) and the logit
  effects of :mod:`.neuron_logits` (``logit_top|bottom_tokens|values``, (L, N, n_logits)).
- ``meta.json``: ``{"model", "n_layers", "d_mlp", "k", "n_tokens", "corpus", "tokenizer_fingerprint", "config"}``.
  ``corpus`` is relative to the run directory (``out_dir/../..`` when ``out_dir`` is ``run/analysis/x``), else to ``out_dir``.
- ``tokenizer.json``: a copy of the model's tokenizer, so queries by token string work anywhere.

The same pass indexes any kind of unit (:func:`build_unit_index` with a :class:`~tinyinterp.interp.units.UnitSource`):
the features of a sparse dictionary are :mod:`.feature_index` (hooks on the dictionary's input only, encoded).

    >>> index = build_neuron_index(model, corpus, run_dir / "analysis" / "neurons")
    >>> index.top_examples(layer=3, neuron=17, k=5, context=8, model=model)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from tqdm.auto import tqdm

from tinyinterp.io.atomic import atomic_write_json
from tinyinterp.errors import DataError, TinyinterpError
from tinyinterp.interp.activations import iter_activations
from tinyinterp.interp.inputs import check_model_corpus, document_windows, model_name
from tinyinterp.interp.neuron_distribution import batch_order, finalize_distribution, init_distribution, update_distribution
from tinyinterp.interp.neuron_query import NeuronQueries
from tinyinterp.interp.units import NeuronUnits, UnitSource
from tinyinterp.runs.rundir import ANALYSIS_DIR, atomic_save_tensors, read_json

log = logging.getLogger(__name__)

INDEX_FILE = "index.safetensors"
META_FILE = "meta.json"
PROGRESS_FILE = "progress.safetensors"
TOKENIZER_COPY = "tokenizer.json"
STAT_KEYS = ("mean", "std", "max", "frac_active")


@dataclass
class NeuronIndexConfig:
    k: int = 20
    """Top activations kept per neuron."""
    batch_size: int = 16
    """Windows per forward pass."""
    seq_len: int | None = None
    """Window length; None = min(n_ctx, 256)."""
    shard_docs: int = 256
    """Documents per shard; progress is saved after each shard."""
    max_docs: int | None = None
    """Index only the first max_docs documents (None = all)."""
    stop_early: bool = True
    """Abort the forward after the last MLP (the logits are not needed)."""
    k_negative: int = 10
    """Most negative activations kept per neuron."""
    n_logits: int = 20
    """Tokens kept per neuron and direction (promoted / suppressed) in the logit effects."""
    device: str = "cpu"

    def __post_init__(self) -> None:
        for name in ("k", "batch_size", "shard_docs", "k_negative", "n_logits"):
            if getattr(self, name) <= 0:
                raise ValueError(f"NeuronIndexConfig.{name} must be positive, got {getattr(self, name)}")


class _RunningState:
    """Top-k and moments for all layers; every tensor is (L, N[, k]) so saving/loading is one dict."""

    def __init__(self, n_layers: int, d_mlp: int, k: int, k_negative: int = 10):
        self.k = k
        self.t = {
            "top_values": torch.full((n_layers, d_mlp, k), float("-inf")),
            "top_positions": torch.full((n_layers, d_mlp, k), -1, dtype=torch.int64),
            "count": torch.zeros(n_layers, dtype=torch.float64),
            "mean": torch.zeros(n_layers, d_mlp, dtype=torch.float64),
            "m2": torch.zeros(n_layers, d_mlp, dtype=torch.float64),
            "max": torch.full((n_layers, d_mlp), float("-inf")),
            "n_active": torch.zeros(n_layers, d_mlp, dtype=torch.float64),
            **init_distribution(n_layers, d_mlp, k_negative),
        }

    def update(self, layer: int, acts: torch.Tensor, positions: torch.Tensor, order: torch.Tensor, rank: torch.Tensor) -> None:
        """Fold ``acts`` (n_tokens, N) at global ``positions`` (n_tokens,) into layer ``layer``;
        ``order``/``rank``: the tokens' sampling priority (:func:`.neuron_distribution.batch_order`)."""
        update_distribution(self.t, layer, acts, positions, order, rank)
        t, n = self.t, acts.shape[0]
        kk = min(self.k, n)
        vals, idx = torch.topk(acts, kk, dim=0)  # (kk, N)
        cand_vals = torch.cat([t["top_values"][layer], vals.T], dim=1)  # (N, k + kk)
        cand_pos = torch.cat([t["top_positions"][layer], positions[idx].T], dim=1)
        best_vals, best = torch.topk(cand_vals, self.k, dim=1)  # (N, k), sorted descending
        t["top_values"][layer] = best_vals
        t["top_positions"][layer] = torch.gather(cand_pos, 1, best)
        # Chan et al. parallel mean/variance: batch moments in float32, the merge in float64.
        batch_mean = acts.mean(0)
        batch_m2 = ((acts - batch_mean) ** 2).sum(0).double()
        n_old = t["count"][layer].item()
        total = n_old + n
        delta = batch_mean.double() - t["mean"][layer]
        t["mean"][layer] += delta * (n / total)
        t["m2"][layer] += batch_m2 + delta**2 * (n_old * n / total)
        t["count"][layer] = total
        t["max"][layer] = torch.maximum(t["max"][layer], vals[0])
        t["n_active"][layer] += (acts > 0).sum(0).double()


def _config_fingerprint(model, corpus, cfg: NeuronIndexConfig, seq_len: int, units: UnitSource) -> dict:
    return {
        "model": model_name(model),
        "n_layers": units.n_layers,
        "d_mlp": units.width,
        "corpus_tokens": int(len(corpus.tokens)),
        "corpus_docs": int(corpus.n_docs),
        "k": cfg.k,
        "k_negative": cfg.k_negative,
        "seq_len": seq_len,
        "shard_docs": cfg.shard_docs,
        "max_docs": cfg.max_docs,
        **units.fingerprint(),
    }


@torch.no_grad()
def build_neuron_index(
    model, corpus, out_dir: str | Path, config: NeuronIndexConfig | None = None, progress: bool = True,
    max_shards: int | None = None,
) -> "NeuronIndex":
    """Stream ``corpus`` through ``model`` and write the neuron index to ``out_dir``.

    Resumes from ``progress.safetensors`` when a previous build with the same settings was
    interrupted. ``max_shards`` stops after that many shards in this call (for tests and for
    splitting a long build over several jobs); the build is finished once all shards are done.
    """
    return build_unit_index(model, corpus, out_dir, NeuronUnits(model), config, progress=progress, max_shards=max_shards)


@torch.no_grad()
def build_unit_index(
    model, corpus, out_dir: str | Path, units: UnitSource, config: NeuronIndexConfig | None = None, progress: bool = True,
    max_shards: int | None = None, index_cls: type | None = None, desc: str | None = None,
) -> "NeuronIndex":
    """:func:`build_neuron_index` for any :class:`~tinyinterp.interp.units.UnitSource` (neurons, dictionary
    features): the one index pass. Returns ``index_cls`` (default :class:`NeuronIndex`), None when paused."""
    cfg = config or NeuronIndexConfig()
    out_dir = Path(out_dir)
    hook_names = units.hook_names()
    check_model_corpus(model, corpus)
    seq_len = min(cfg.seq_len or 256, model.cfg.n_ctx)
    settings = _config_fingerprint(model, corpus, cfg, seq_len, units)
    n_docs = corpus.n_docs if cfg.max_docs is None else min(cfg.max_docs, corpus.n_docs)
    n_shards = -(-n_docs // cfg.shard_docs)

    state = _RunningState(units.n_layers, units.width, cfg.k, cfg.k_negative)
    shards_done = _load_progress(out_dir / PROGRESS_FILE, settings, state)
    if shards_done:
        log.info("resuming %s index at shard %d/%d", units.unit, shards_done, n_shards)

    layer_of = {name: l for l, name in enumerate(hook_names)}

    def fold(name: str, acts: torch.Tensor, batch) -> None:
        if "order" not in batch.memo:  # the tokens' sampling order, shared by all layers
            batch.memo["order"] = batch_order(batch.real_positions)
        layer = layer_of[name]
        flat = units.activations(layer, batch.real_rows(acts.detach())).cpu()  # the running state lives on the CPU
        state.update(layer, flat, batch.real_positions, *batch.memo["order"])

    shard_windows = [
        document_windows(corpus, seq_len, s * cfg.shard_docs, min((s + 1) * cfg.shard_docs, n_docs))
        for s in range(n_shards)
    ]
    total_batches = sum(-(-len(w) // cfg.batch_size) for w in shard_windows)
    done_batches = sum(-(-len(w) // cfg.batch_size) for w in shard_windows[:shards_done])
    bar = tqdm(total=total_batches, initial=done_batches, desc=desc or f"{units.unit} index", unit="batch", disable=not progress)
    stop_at = n_shards if max_shards is None else min(n_shards, shards_done + max_shards)
    for shard in range(shards_done, stop_at):
        for _ in iter_activations(model, corpus, shard_windows[shard], hook_names, batch_size=cfg.batch_size,
                                  device=cfg.device, reduce=fold, stop_early=cfg.stop_early):
            bar.update(1)
        _save_progress(out_dir / PROGRESS_FILE, settings, state, shard + 1)
    bar.close()
    if stop_at < n_shards:
        log.info("%s index paused after shard %d/%d; run again to resume", units.unit, stop_at, n_shards)
        return None
    if state.t["count"][0] == 0:
        raise DataError(f"{getattr(corpus, 'path', 'corpus')}: no tokens were indexed; the documents are empty")
    index = _finalize(state, corpus)
    try:
        index |= units.logit_effects(cfg.n_logits)
    except TinyinterpError as e:  # an exotic model without readable W_out/W_U: the rest of the index still works
        log.warning("no logit effects in the %s index: %s", units.unit, e)
    meta = {
        **{k: settings[k] for k in ("model", "n_layers", "d_mlp", "k")},
        **units.meta(out_dir),
        "n_tokens": int(state.t["count"][0].item()),
        "corpus": _relative_corpus_path(out_dir, getattr(corpus, "path", None)),
        "tokenizer_fingerprint": getattr(corpus, "tokenizer_fingerprint", None),
        "config": dataclasses.asdict(cfg) | {"seq_len": seq_len},
    }
    atomic_save_tensors(out_dir / INDEX_FILE, index)
    if getattr(model, "tokenizer", None) is not None:
        model.tokenizer.save(out_dir / TOKENIZER_COPY)
    atomic_write_json(out_dir / META_FILE, meta)  # last: an index dir with meta.json is complete
    (out_dir / PROGRESS_FILE).unlink(missing_ok=True)
    return (index_cls or NeuronIndex)(out_dir, meta, index, corpus=corpus, tokenizer=getattr(model, "tokenizer", None))


def _path_base(index_dir: Path) -> Path:
    """The folder ``meta.json``'s corpus path is relative to: the run directory for ``run/analysis/<x>/``
    (so the run can move, and the app can serve it from any cwd), else the index folder itself."""
    index_dir = Path(index_dir)
    return index_dir.parent.parent if index_dir.parent.name == ANALYSIS_DIR else index_dir


def _relative_corpus_path(index_dir: Path, corpus_path) -> str:
    if not corpus_path:
        return ""
    return os.path.relpath(Path(corpus_path).resolve(), _path_base(index_dir).resolve())


def recorded_corpus_path(index_dir: str | Path, meta: dict) -> Path | None:
    """Where ``meta.json`` says the corpus is, resolved against the run directory (never the cwd);
    an index from before that rule kept an absolute or cwd-relative path, which is tried last."""
    where = meta.get("corpus")
    if not where:
        return None
    candidate = _path_base(Path(index_dir)) / where  # an absolute `where` stays as it is
    if not candidate.exists() and Path(where).exists():
        return Path(where)  # an old index: relative to the cwd of the build
    return candidate


def _save_progress(path: Path, settings: dict, state: _RunningState, shards_done: int) -> None:
    meta = {"settings": json.dumps(settings, sort_keys=True), "shards_done": str(shards_done)}
    atomic_save_tensors(path, state.t, metadata=meta)


def _load_progress(path: Path, settings: dict, state: _RunningState) -> int:
    if not path.is_file():
        return 0
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    if meta.get("settings") != json.dumps(settings, sort_keys=True):
        log.warning("%s was written with other settings; starting the index from scratch", path)
        return 0
    state.t.update(load_file(str(path)))
    return int(meta["shards_done"])


def _finalize(state: _RunningState, corpus) -> dict[str, torch.Tensor]:
    t = state.t
    count = t["count"].clamp(min=1)[:, None]
    positions = t["top_positions"].numpy()
    valid = positions >= 0
    safe = np.where(valid, positions, 0)
    tokens = np.asarray(corpus.tokens[safe.reshape(-1)], dtype=np.int64).reshape(positions.shape)
    prev = np.asarray(corpus.tokens[np.maximum(safe - 1, 0).reshape(-1)], dtype=np.int64).reshape(positions.shape)
    doc_starts = np.asarray(corpus.doc_offsets)
    at_doc_start = np.isin(safe, doc_starts)
    return {
        "top_values": t["top_values"].float(),
        "top_positions": t["top_positions"],
        "top_tokens": torch.from_numpy(np.where(valid, tokens, -1).astype(np.int32)),
        "top_prev_tokens": torch.from_numpy(np.where(valid & ~at_doc_start, prev, -1).astype(np.int32)),
        "mean": t["mean"].float(),
        "std": (t["m2"] / count).sqrt().float(),
        "max": t["max"].float(),
        "frac_active": (t["n_active"] / count).float(),
        **finalize_distribution(t),
    }


class NeuronIndex(NeuronQueries):
    """A built neuron index: tensors of ``index.safetensors`` + ``meta.json``; queries in :class:`NeuronQueries`.
    :class:`~tinyinterp.interp.feature_index.FeatureIndex` is the same over a dictionary's features."""

    what = "neuron index"
    build_command = "tinyinterp analyze neurons"

    def __init__(self, path: Path, meta: dict, tensors: dict[str, torch.Tensor], corpus=None, tokenizer=None):
        self.path, self.meta, self.tensors = Path(path), meta, tensors
        self._corpus, self._tokenizer = corpus, tokenizer

    @classmethod
    def load(cls, path: str | Path, corpus=None, tokenizer=None) -> "NeuronIndex":
        """Load an index dir; ``corpus``/``tokenizer`` default to the ones recorded beside it."""
        path = Path(path)
        meta = read_json(path / META_FILE)
        # another kind of units (a dictionary's features): the class registered for them knows their source
        cls = INDEX_CLASSES.get(meta.get("units"), cls) if cls is NeuronIndex else cls
        index_file = path / INDEX_FILE
        if not index_file.is_file():
            raise DataError(f"{index_file}: {cls.what} not found; run `{cls.build_command}` first")
        return cls(path, meta, load_file(str(index_file)), corpus=corpus, tokenizer=tokenizer)

    @property
    def n_layers(self) -> int:
        return int(self.meta["n_layers"])

    @property
    def d_mlp(self) -> int:
        return int(self.meta["d_mlp"])

    @property
    def k(self) -> int:
        return int(self.meta["k"])

    @property
    def tokenizer(self):
        if self._tokenizer is None and (self.path / TOKENIZER_COPY).is_file():
            from tinyinterp.data.tokenizer import Tokenizer

            self._tokenizer = Tokenizer.load(self.path / TOKENIZER_COPY)
        return self._tokenizer

    @property
    def corpus(self):
        if self._corpus is None:
            where = recorded_corpus_path(self.path, self.meta)
            if where is None or not where.exists():
                raise DataError(f"{self.path / META_FILE}: corpus {self.meta.get('corpus')!r} not found; pass corpus= to NeuronIndex.load")
            from tinyinterp.data.corpus import TokenizedCorpus

            self._corpus = TokenizedCorpus.open(where)
        fp = self.meta.get("tokenizer_fingerprint")
        if fp and getattr(self._corpus, "tokenizer_fingerprint", fp) != fp:
            raise DataError(f"{self.path}: the given corpus was tokenized differently from the indexed one; pass the indexed corpus")
        return self._corpus


INDEX_CLASSES: dict[str, type[NeuronIndex]] = {"neurons": NeuronIndex}
"""``meta.json``'s ``"units"`` -> the index class :meth:`NeuronIndex.load` returns (``feature_index`` adds
``"features"`` when ``tinyinterp.interp`` is imported, which importing this module always does first)."""
