"""Queries on a built neuron index: examples in context (top, quantile, most negative), activation
histograms, logit effects, neurons for a token or a word, token histograms.

Mixed into :class:`tinyinterp.interp.neuron_index.NeuronIndex`, which supplies ``tensors`` (the
arrays of ``index.safetensors``), ``meta``, ``corpus`` and ``tokenizer``. Activations of the
tokens *around* a top example are not stored (that would be a full cache); pass ``model=`` to
``top_examples`` and the examples' windows are re-run (with the same window the index used, so the
centre activation matches the stored one; batched, and stopped after the neuron's layer, by
:func:`~tinyinterp.interp.activations.iter_activations`) to fill them in; without a model only the
centre is known.

    >>> ex = index.top_examples(2, 40, k=3, context=6, model=model)[0]
    >>> ex.token_strs[ex.center], ex.activations[ex.center] == ex.activation
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from tinyinterp.errors import TinyinterpError
from tinyinterp.interp.activations import iter_activations
from tinyinterp.interp.inputs import check_layer_neuron, doc_of_position
from tinyinterp.interp.neuron_distribution import bin_ranges, quantile_bins

DEFAULT_QUANTILES = (0.1, 0.5, 0.9, 0.99, 0.999)
"""Quantiles :meth:`NeuronQueries.quantile_examples` draws from by default (top-k covers the very top)."""


@dataclass
class Example:
    """One top activation of a neuron, with ``context`` tokens either side (within its document)."""

    doc: int
    pos: int
    """Position inside the document."""
    activation: float
    tokens: list[int]
    token_strs: list[str]
    activations: list[float]
    """The neuron's activation on each token of the window (NaN where unknown: no model given)."""
    center: int
    """Index of the top token inside ``tokens``."""
    quantile: float | None = None
    """For a quantile example: the quantile asked for."""
    share_range: tuple[float, float] | None = None
    """For a quantile example: share of the corpus's tokens below / up to the end of the example's
    histogram bin (the example's own quantile lies in this range)."""

    def text(self, mark: str = "[[{}]]") -> str:
        return "".join(mark.format(s) if i == self.center else s for i, s in enumerate(self.token_strs))


class NeuronQueries:
    tensors: dict[str, torch.Tensor]
    meta: dict

    def unit_source(self, model):
        """How to recompute this index's unit activations with ``model``: its MLP neurons here; a
        :class:`~tinyinterp.interp.feature_index.FeatureIndex` answers with its dictionary's features."""
        from tinyinterp.interp.units import NeuronUnits

        return NeuronUnits(model)

    def _token_str(self, token_id: int) -> str:
        tok = self.tokenizer
        return tok.token_str(int(token_id)) if tok is not None else f"<{int(token_id)}>"

    def _token_id(self, token: int | str) -> int:
        if isinstance(token, (int, np.integer)):
            return int(token)
        tok = self.tokenizer
        if tok is None:
            raise TinyinterpError(f"token {token!r}: this index has no tokenizer.json; pass a token id instead")
        ids = tok.encode(token)
        if len(ids) != 1:
            raise TinyinterpError(f"token {token!r} is {len(ids)} tokens for this tokenizer; pass a single token (e.g. ' Lucy')")
        return ids[0]

    def _require(self, key: str, what: str) -> torch.Tensor:
        if key not in self.tensors:
            raise TinyinterpError(f"{getattr(self, 'path', 'index')}: this neuron index has no {what} (built by an older "
                                  "version); rebuild it with `tinyinterp analyze neurons`")
        return self.tensors[key]

    def top_examples(self, layer: int, neuron: int, k: int | None = None, context: int = 8, model=None) -> list[Example]:
        """The ``k`` highest activations of ``neuron`` with ``context`` tokens each side."""
        check_layer_neuron(self, layer, neuron, owner="index")
        return self._examples(layer, neuron, self.tensors["top_values"][layer, neuron],
                              self.tensors["top_positions"][layer, neuron], k or self.k, context, model)

    def negative_examples(self, layer: int, neuron: int, k: int | None = None, context: int = 8, model=None) -> list[Example]:
        """The ``k`` most negative activations of ``neuron`` (most negative first)."""
        check_layer_neuron(self, layer, neuron, owner="index")
        values = self._require("bottom_values", "most negative examples")[layer, neuron]
        positions = self.tensors["bottom_positions"][layer, neuron]
        return self._examples(layer, neuron, values, positions, k or len(values), context, model)

    def quantile_examples(self, layer: int, neuron: int, quantiles=DEFAULT_QUANTILES, context: int = 8,
                          model=None) -> list[Example]:
        """One example per quantile of the neuron's activation over the whole indexed corpus.

        Each example is a uniform random token from the histogram bin that holds the quantile (see
        :mod:`.neuron_distribution`), so its activation is within that bin's range (a factor <= 1.5
        wide, except the zero bin |x| < 2^-8 and the overflow bins); ``Example.quantile`` is the quantile asked for, ``Example.share_range`` the share of
        tokens below / up to the end of its bin.
        """
        check_layer_neuron(self, layer, neuron, owner="index")
        counts = self._require("hist_counts", "activation histogram")[layer, neuron].numpy()
        positions = self.tensors["sample_positions"][layer, neuron]
        values = self.tensors["sample_values"][layer, neuron]
        out = []
        for q, (b, lo, hi) in zip(quantiles, quantile_bins(counts, quantiles)):
            (ex,) = self._examples(layer, neuron, values[b : b + 1], positions[b : b + 1], 1, context, model)
            ex.quantile, ex.share_range = float(q), (lo, hi)
            out.append(ex)
        return out

    def activation_histogram(self, layer: int, neuron: int) -> pd.DataFrame:
        """The neuron's activation histogram over the indexed corpus: one row per bin (lo, hi, count).

        Bins are fixed half-octaves of ``|x|`` (:func:`.neuron_distribution.bin_edges`); the first and
        last are overflow bins (``±inf``), the middle one holds ``|x| < 2^-8``.
        """
        check_layer_neuron(self, layer, neuron, owner="index")
        counts = self._require("hist_counts", "activation histogram")[layer, neuron].numpy()
        ranges = bin_ranges()
        return pd.DataFrame({"lo": ranges[:, 0], "hi": ranges[:, 1], "count": counts})

    def logit_effects(self, layer: int, neuron: int, n: int | None = None) -> dict[str, pd.DataFrame]:
        """Tokens the neuron's output weight promotes / suppresses most through the unembedding.

        ``{"promoted": DataFrame(token_id, token, effect), "suppressed": ...}``, strongest first; the
        direct-path approximation is described in :mod:`.neuron_logits`.
        """
        check_layer_neuron(self, layer, neuron, owner="index")
        out = {}
        for name, key in (("promoted", "logit_top"), ("suppressed", "logit_bottom")):
            ids = self._require(f"{key}_tokens", "logit effects")[layer, neuron][:n].tolist()
            vals = self.tensors[f"{key}_values"][layer, neuron][:n].tolist()
            out[name] = pd.DataFrame({"token_id": ids, "token": [self._token_str(t) for t in ids], "effect": vals})
        return out

    def find_neurons(self, words, model, top: int = 20, **kwargs) -> pd.DataFrame:
        """Neurons that fire selectively on ``words`` (case-insensitive); see :func:`.neuron_search.find_neurons`."""
        from tinyinterp.interp.neuron_search import find_neurons

        return find_neurons(self, model, words, top=top, **kwargs)

    def _examples(self, layer: int, neuron: int, values: torch.Tensor, positions: torch.Tensor, k: int, context: int,
                  model) -> list[Example]:
        positions = positions.numpy()
        keep = positions >= 0
        values, positions = values[torch.from_numpy(keep)][:k], positions[keep][:k]
        corpus = self.corpus
        offsets = np.asarray(corpus.doc_offsets)
        docs = doc_of_position(corpus, positions)
        out = []
        for value, pos, doc in zip(values.tolist(), positions.tolist(), docs.tolist()):
            lo, hi = max(int(offsets[doc]), pos - context), min(int(offsets[doc + 1]), pos + context + 1)
            tokens = [int(t) for t in corpus.tokens[lo:hi]]
            acts = [float("nan")] * len(tokens)
            acts[pos - lo] = value
            out.append(Example(doc, pos - int(offsets[doc]), value, tokens, [self._token_str(t) for t in tokens], acts, pos - lo))
        if model is not None and out:
            self._fill_window_activations(model, layer, neuron, out, offsets)
        return out

    def _fill_window_activations(self, model, layer: int, neuron: int, examples: list[Example], offsets,
                                 batch_size: int = 4) -> None:
        """Re-run the windows the index ran for ``examples`` and fill in the neuron's activation on every
        token of each example. One batched pass, stopped after ``layer``; each distinct window runs once,
        and only up to its last shown token (attention is causal: later tokens change nothing before them)."""
        seq_len = int(self.meta["config"]["seq_len"])
        spans, run_to = [], {}  # per example: (window start, window end); per window start: (doc, end to run)
        for ex in examples:
            start = int(offsets[ex.doc]) + (ex.pos // seq_len) * seq_len
            end = min(start + seq_len, int(offsets[ex.doc + 1]))
            shown_end = int(offsets[ex.doc]) + ex.pos - ex.center + len(ex.tokens)
            spans.append((start, end))
            run_to[start] = (ex.doc, max(run_to.get(start, (0, 0))[1], min(end, shown_end)))
        rows = np.array([(doc, start, stop - start) for start, (doc, stop) in run_to.items()], dtype=np.int64).reshape(-1, 3)
        # Longest first, in small batches: the windows are cut at different lengths, and padding a batch to
        # its longest costs more than a bigger batch saves (measured in bench/neuron_page.py).
        rows = rows[np.lexsort((rows[:, 1], -rows[:, 2]))]
        units = self.unit_source(model)  # neurons: the MLP hook as it is; features: the dictionary's encode
        name = units.hook(layer)
        act_at: dict[int, float] = {}  # global position -> activation
        for batch in iter_activations(model, self.corpus, rows, [name], batch_size=batch_size,
                                      reduce=lambda _, acts, b: b.real_rows(units.unit_activations(layer, acts, neuron)).cpu()):
            act_at.update(zip(batch.real_positions.tolist(), batch.acts[name].tolist()))
        for ex, (start, end) in zip(examples, spans):
            lo = int(offsets[ex.doc]) + ex.pos - ex.center
            for i in range(len(ex.tokens)):
                if start <= lo + i < end:  # context outside the example's window stays unknown (NaN)
                    ex.activations[i] = act_at[lo + i]

    def neurons_for_token(self, token: int | str, top: int = 20) -> pd.DataFrame:
        """Neurons whose top-k lists contain ``token`` most often (ties: higher max activation first)."""
        token_id = self._token_id(token)
        hits_mask = self.tensors["top_tokens"] == token_id  # (L, N, k)
        hits = hits_mask.sum(-1)
        best = torch.where(hits_mask, self.tensors["top_values"], torch.tensor(float("-inf"))).amax(-1)
        layers, neurons = torch.nonzero(hits, as_tuple=True)
        frame = pd.DataFrame({
            "layer": layers.numpy(), "neuron": neurons.numpy(),
            "hits": hits[layers, neurons].numpy(), "max_activation": best[layers, neurons].numpy(),
        })
        return frame.sort_values(["hits", "max_activation"], ascending=False).head(top).reset_index(drop=True)

    def token_histogram(self, layer: int, neuron: int) -> dict[str, int]:
        """Token string -> count among the neuron's top-k tokens, most frequent first."""
        check_layer_neuron(self, layer, neuron, owner="index")
        ids = [t for t in self.tensors["top_tokens"][layer, neuron].tolist() if t >= 0]
        return dict(Counter(self._token_str(t) for t in ids).most_common())

    def top_token_strs(self, layer: int, neuron: int, n: int = 5) -> list[str]:
        return list(self.token_histogram(layer, neuron))[:n]

    def stats_frame(self, layer: int | None = None) -> pd.DataFrame:
        """One row per neuron: layer, neuron, mean, std, max, frac_active."""
        L, N = self.n_layers, self.d_mlp
        frame = pd.DataFrame({
            "layer": np.repeat(np.arange(L), N), "neuron": np.tile(np.arange(N), L),
            **{key: self.tensors[key].reshape(-1).numpy() for key in ("mean", "std", "max", "frac_active")},
        })
        if layer is not None:
            check_layer_neuron(self, layer, owner="index")
            frame = frame[frame.layer == layer].reset_index(drop=True)
        return frame
