"""Activation records of a neuron: short token windows with the neuron's activation on every token.

Units are whatever the index is over (:meth:`NeuronIndex.unit_source`): MLP neurons, or the features of a
sparse dictionary (a :class:`~tinyinterp.interp.feature_index.FeatureIndex`: layer 0, "neuron" = feature id,
activations = the dictionary's encode of its input hook). Everything below says "neuron" for both.

A neuron's records come in three sets (the "top-and-random" scheme of Bills et al. 2023):

- ``explain``: top activations shown to the explainer (every other rank of the index's top-k:
  ranks 0, 2, 4, …, so the held-out top set is as strong as the shown one);
- ``heldout_top``: the other top ranks (1, 3, 5, …), never shown to the explainer;
- ``heldout_random``: a stratified random sample: windows around the index's quantile examples
  (``NeuronIndex.quantile_examples`` at quantiles (i + 0.5) / n; one random token from the histogram
  bin of each), topped up, where several quantiles share a bin, with uniformly random positions (a
  seeded pick per neuron from a seeded pool per layer, run once for all neurons of the layer).

Positions come from the public neuron-index API (``NeuronIndex.top_examples``) and the corpus;
activations are recomputed by running the model on exactly the window the index ran (documents cut
into ``seq_len`` windows), so a record's centre activation equals the stored top value. Windows of
all neurons of a layer are grouped and run in batches with one hook (no activation cache).
Activations are normalised to integers 0–10 per neuron as in the paper: ``floor(10 * relu(a) / max)``
with ``max`` the neuron's largest activation in the index.

    >>> builder = RecordBuilder(model, index, RecordConfig())
    >>> recs = builder.build(layer=1, neurons=[5, 9])[5]
    >>> recs.explain[0].tokens, normalize(recs.explain[0].activations, recs.max_activation)
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from tinyinterp.errors import TinyinterpError
from tinyinterp.interp.activations import iter_activations
from tinyinterp.interp.units import NeuronUnits

log = logging.getLogger(__name__)

MAX_NORMALIZED = 10


@dataclass
class RecordConfig:
    """How many records of which kind, and how wide."""

    n_explain: int = 10
    """Top records shown to the explainer (even ranks of the index's top-k)."""
    n_heldout_top: int = 5
    """Held-out top records used for scoring (odd ranks)."""
    n_heldout_random: int = 5
    """Held-out random-position records used for scoring."""
    context_left: int = 24
    """Tokens before the record's centre (clipped to the model window the index ran)."""
    context_right: int = 8
    seed: int = 0
    """Seed of the random records (combined with layer and neuron, so each neuron is stable alone)."""
    random_source: str = "quantile"
    """"quantile": held-out random records centred on the index's quantile examples (one uniform random
    token from the histogram bin of each of the quantiles (i + 0.5) / n: a stratified random sample),
    topped up from the pool where bins repeat; "pool" (or an index without histograms): the pool only."""
    random_pool: int = 64
    """Random positions drawn per layer; each neuron's random records are a seeded pick from this pool,
    so a layer's random windows are run once for all its neurons instead of once per neuron."""
    batch_size: int = 16
    """Windows per forward pass."""
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.n_explain < 1 or self.n_heldout_top < 0 or self.n_heldout_random < 0:
            raise TinyinterpError("RecordConfig: n_explain >= 1 and n_heldout_* >= 0 are required")
        if self.n_heldout_top + self.n_heldout_random < 1:
            raise TinyinterpError("RecordConfig: at least one held-out record is needed to score an explanation")
        if self.random_source not in ("quantile", "pool"):
            raise TinyinterpError(f"RecordConfig.random_source must be 'quantile' or 'pool', got {self.random_source!r}")
        if self.context_left < 0 or self.context_right < 0 or self.batch_size < 1:
            raise TinyinterpError("RecordConfig: context sizes must be >= 0 and batch_size >= 1")


@dataclass
class ActivationRecord:
    """One window: token strings and the neuron's raw activation on each."""

    tokens: list[str]
    activations: list[float]
    kind: str
    """"top" or "random"."""
    start: int = -1
    """Global corpus offset of the first token."""
    token_ids: list[int] = field(default_factory=list)


@dataclass
class NeuronRecords:
    layer: int
    neuron: int
    max_activation: float
    """The neuron's largest activation in the index (the 10 of the 0–10 scale)."""
    explain: list[ActivationRecord]
    heldout_top: list[ActivationRecord]
    heldout_random: list[ActivationRecord]

    @property
    def heldout(self) -> list[ActivationRecord]:
        return self.heldout_top + self.heldout_random

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> NeuronRecords:
        recs = {k: [ActivationRecord(**r) for r in d[k]] for k in ("explain", "heldout_top", "heldout_random")}
        return cls(layer=d["layer"], neuron=d["neuron"], max_activation=d["max_activation"], **recs)


def normalize(activations: list[float], max_activation: float) -> list[int]:
    """Integers 0–10: ``floor(10 * relu(a) / max)``, capped at 10 (all 0 when max <= 0)."""
    if not max_activation > 0:
        return [0] * len(activations)
    # The epsilon keeps the maximum itself at 10 when 10 * a / a rounds to 9.999…
    return [min(MAX_NORMALIZED, math.floor(MAX_NORMALIZED * max(0.0, a) / max_activation + 1e-9)) for a in activations]


@dataclass
class _Request:
    """A record to fill: which neuron, which tokens (global offsets lo..hi) inside which model window."""

    neuron: int
    kind: str
    window_start: int
    window_end: int
    lo: int
    hi: int


class RecordBuilder:
    """Builds :class:`NeuronRecords` for neurons of one layer at a time."""

    def __init__(self, model, index, cfg: RecordConfig | None = None):
        self.model, self.index, self.cfg = model, index, cfg or RecordConfig()
        self.corpus = index.corpus
        self.offsets = np.asarray(self.corpus.doc_offsets, dtype=np.int64)
        self.seq_len = int(index.meta.get("config", {}).get("seq_len") or model.cfg.n_ctx)
        # neurons, or a dictionary's features (a FeatureIndex): which hook to read and how to turn it into units
        self.units = index.unit_source(model) if hasattr(index, "unit_source") else NeuronUnits(model)
        self.tokenizer = index.tokenizer or getattr(model, "tokenizer", None)
        if self.tokenizer is None:
            raise TinyinterpError(f"{index.path}: no tokenizer beside the index or on the model; records need token strings")
        need = self.cfg.n_explain + self.cfg.n_heldout_top
        if index.k < need:
            log.warning("the index keeps top-%d per neuron; %d top records were asked for, fewer are used", index.k, need)

    def _request(self, neuron: int, kind: str, pos: int) -> _Request:
        doc = int(np.searchsorted(self.offsets, pos, side="right") - 1)
        doc_start, doc_end = int(self.offsets[doc]), int(self.offsets[doc + 1])
        w_start = doc_start + ((pos - doc_start) // self.seq_len) * self.seq_len  # the window the index ran
        w_end = min(w_start + self.seq_len, doc_end)
        lo, hi = max(w_start, pos - self.cfg.context_left), min(w_end, pos + self.cfg.context_right + 1)
        return _Request(neuron, kind, w_start, w_end, lo, hi)

    def _top_positions(self, layer: int, neuron: int) -> list[int]:
        examples = self.index.top_examples(layer, neuron, k=self.index.k, context=0)
        return [int(self.offsets[ex.doc]) + ex.pos for ex in examples]

    def _quantile_positions(self, layer: int, neuron: int) -> list[int]:
        n = self.cfg.n_heldout_random
        if self.cfg.random_source != "quantile" or "hist_counts" not in self.index.tensors or n == 0:
            return []
        try:
            examples = self.index.quantile_examples(layer, neuron, quantiles=[(i + 0.5) / n for i in range(n)], context=0)
        except (TinyinterpError, ValueError):  # an empty histogram bin: fall back to the pool
            return []
        return list(dict.fromkeys(int(self.offsets[ex.doc]) + ex.pos for ex in examples))  # a bin can hold several quantiles

    def _random_positions(self, layer: int, neuron: int) -> list[int]:
        n = self.cfg.n_heldout_random
        chosen = self._quantile_positions(layer, neuron)[:n]
        pool_size = max(self.cfg.random_pool, n)
        pool = np.random.default_rng([self.cfg.seed, layer]).integers(0, self.corpus.n_tokens, size=pool_size)
        order = np.random.default_rng([self.cfg.seed, layer, neuron]).permutation(pool_size)
        for i in order:
            if len(chosen) >= n:
                break
            if int(pool[i]) not in chosen:
                chosen.append(int(pool[i]))
        return chosen

    def build(self, layer: int, neurons: list[int]) -> dict[int, NeuronRecords]:
        """Records of ``neurons`` of ``layer`` (one batched model pass over all their windows)."""
        cfg = self.cfg
        requests: list[_Request] = []
        for n in neurons:
            top = self._top_positions(layer, n)
            explain, held = top[0::2][: cfg.n_explain], top[1::2][: cfg.n_heldout_top]
            if not explain:
                raise TinyinterpError(f"neuron {layer}:{n} has no top examples in the index; rebuild it over more tokens")
            requests += [self._request(n, "explain", p) for p in explain]
            requests += [self._request(n, "top", p) for p in held]
            requests += [self._request(n, "random", p) for p in self._random_positions(layer, n)]
        acts = self._run_windows(layer, requests)
        maxima = self.index.tensors["max"][layer]
        out: dict[int, NeuronRecords] = {}
        for n in neurons:
            out[n] = NeuronRecords(layer, n, float(maxima[n]), [], [], [])
        for req, values in zip(requests, acts):
            ids = [int(t) for t in self.corpus.tokens[req.lo: req.hi]]
            rec = ActivationRecord([self.tokenizer.token_str(t) for t in ids], values, "random" if req.kind == "random" else "top",
                                   req.lo, ids)
            target = {"explain": out[req.neuron].explain, "top": out[req.neuron].heldout_top,
                      "random": out[req.neuron].heldout_random}[req.kind]
            target.append(rec)
        for recs in out.values():  # the index max can lag a model edit; never let a record exceed 10
            seen = max((max(r.activations, default=0.0) for r in recs.explain), default=0.0)
            recs.max_activation = max(recs.max_activation, seen)
        return out

    def _run_windows(self, layer: int, requests: list[_Request]) -> list[list[float]]:
        """Activations of each request's tokens, running each distinct window once.

        Top examples of many neurons share windows, so building records for a whole layer's neurons
        at once costs about one pass over the windows that hold any of their examples (batched and
        stopped after ``layer`` by :func:`~tinyinterp.interp.activations.iter_activations`). Only the
        requested (tokens, neuron) slices are kept, never a window's full (T, d_mlp) block.
        """
        windows = sorted({(r.window_start, r.window_end) for r in requests})
        by_window: dict[tuple[int, int], list[int]] = {}
        for i, r in enumerate(requests):
            by_window.setdefault((r.window_start, r.window_end), []).append(i)
        neurons = sorted({r.neuron for r in requests})
        col_of = {n: i for i, n in enumerate(neurons)}
        cols = torch.tensor(neurons, dtype=torch.long)
        rows = np.array([(-1, s, e - s) for s, e in windows], dtype=np.int64).reshape(-1, 3)  # (doc unused, start, length)
        units = self.units
        name = units.hook(layer)
        out: list[list[float]] = [[] for _ in requests]
        for batch in iter_activations(self.model, self.corpus, rows, [name], batch_size=self.cfg.batch_size,
                                      device=self.cfg.device,
                                      reduce=lambda _, act, b: units.unit_activations(layer, act, cols.to(act.device)).cpu()):
            block = batch.acts[name].numpy()  # (B, T, n_neurons)
            for row, (_, s, length) in enumerate(batch.windows.tolist()):
                for i in by_window[(s, s + length)]:
                    r = requests[i]
                    out[i] = block[row, r.lo - r.window_start: r.hi - r.window_start, col_of[r.neuron]].tolist()
        return out
