"""Checks and corpus windows shared by every analysis in :mod:`tinyinterp.interp`.

Analyses only see a model through the contract of ``AGENTS.md`` (``cfg``, hook names,
``run_with_hooks``, ``model.tokenizer``) and a corpus through the ``TokenizedCorpus`` interface
(``tokens`` memmap, ``doc_offsets``, ``n_docs``, ``tokenizer_fingerprint``). This module turns the
ways these can be wrong into one-line errors, and cuts documents into fixed windows of at most
``seq_len`` tokens that the analyses batch over. A window never crosses a document boundary, so
an activation only ever depends on the document it belongs to.

    >>> windows = document_windows(corpus, seq_len=128)      # (n, 3) int64: doc, global start, length
    >>> for tokens, mask, starts in iter_batches(corpus, windows, batch_size=16): ...
"""

from __future__ import annotations

import logging
from typing import Iterator

import numpy as np
import torch

from tinyinterp.errors import DataError, TinyinterpError

log = logging.getLogger(__name__)

MLP_HOOK = "blocks.{layer}.mlp.hook_post"
PATTERN_HOOK = "blocks.{layer}.attn.hook_pattern"


class ModelHookError(TinyinterpError):
    """The model lacks a hook point an analysis needs (e.g. an attention-only model has no MLP)."""


def model_name(model) -> str:
    """A short display name for a model (its preset, its HF name, or its class)."""
    if isinstance(getattr(model, "name", None), str):  # ExternalModel: the hub name or folder
        return model.name
    cfg = model.cfg
    for attr in ("preset", "model_name", "name_or_path"):
        value = getattr(cfg, attr, None)
        if value:
            return str(value)
    return type(model).__name__


def require_hooks(model, names: list[str], what: str | None = None) -> list[str]:
    """``names`` if the model has every one of them, else a one-line :class:`ModelHookError`
    (``what``: the kind of hook the analysis needs, e.g. "MLP", for the message)."""
    hook_dict = getattr(model, "hook_dict", None)
    if hook_dict is None:  # cannot check up front; run_with_hooks will complain if they are missing
        return names
    missing = [n for n in names if n not in hook_dict]
    if missing:
        need = f"this analysis needs a transformer with {what} hooks" if what else "model.hook_dict lists the ones it has"
        raise ModelHookError(
            f"model {model_name(model)} has no {what + ' ' if what else ''}hook {missing[0]!r}; "
            f"{need} (see AGENTS.md hook names)"
        )
    return names


def mlp_hook_names(model) -> list[str]:
    """``blocks.{l}.mlp.hook_post`` for every layer; raises :class:`ModelHookError` when absent."""
    return require_hooks(model, [MLP_HOOK.format(layer=l) for l in range(model.cfg.n_layers)], "MLP")


def pattern_hook_names(model) -> list[str]:
    """``blocks.{l}.attn.hook_pattern`` for every layer; raises :class:`ModelHookError` when absent."""
    return require_hooks(model, [PATTERN_HOOK.format(layer=l) for l in range(model.cfg.n_layers)], "attention")


def corpus_label(corpus) -> str:
    return str(getattr(corpus, "path", None) or getattr(corpus, "root", None) or "corpus")


def check_model_corpus(model, corpus) -> None:
    """Refuse an empty corpus, a corpus made with another tokenizer, or token ids the model cannot embed."""
    label = corpus_label(corpus)
    if corpus.n_docs == 0 or len(corpus.tokens) == 0:
        raise DataError(f"{label}: corpus is empty (0 tokens); tokenize some documents into it first")
    tokenizer = getattr(model, "tokenizer", None)
    corpus_fp = getattr(corpus, "tokenizer_fingerprint", None)
    if tokenizer is not None and corpus_fp and hasattr(tokenizer, "fingerprint"):
        model_fp = tokenizer.fingerprint()
        if model_fp != corpus_fp:
            raise DataError(
                f"{label}: corpus was tokenized with tokenizer {corpus_fp[:12]} but the model uses "
                f"{model_fp[:12]}; re-tokenize the corpus with the model's tokenizer"
            )
    elif tokenizer is None:
        log.warning("model has no tokenizer; cannot check that %s was tokenized for it", label)
    # Only the max matters and a memmap max is one streaming pass; cap the pass on huge corpora.
    sample = corpus.tokens[: 50_000_000]
    top = int(np.max(sample)) if len(sample) else 0
    if top >= model.cfg.d_vocab:
        raise DataError(
            f"{label}: token id {top} is outside the model's vocabulary of {model.cfg.d_vocab}; "
            "re-tokenize the corpus with the model's tokenizer"
        )


def check_layer_neuron(shape, layer: int, neuron: int | None = None, owner: str = "model") -> None:
    """One-line errors for a layer or neuron outside ``shape`` (anything with ``n_layers`` and ``d_mlp``:
    a model's ``cfg``, a neuron index); ``owner`` names it in the message."""
    if not 0 <= int(layer) < shape.n_layers:
        raise TinyinterpError(f"layer {layer} is out of range: the {owner} has layers 0..{shape.n_layers - 1}")
    if neuron is not None and not 0 <= int(neuron) < shape.d_mlp:
        raise TinyinterpError(f"neuron {neuron} is out of range: layer {layer} has neurons 0..{shape.d_mlp - 1}")


def document_windows(corpus, seq_len: int, doc_start: int = 0, doc_stop: int | None = None) -> np.ndarray:
    """Cut documents ``doc_start..doc_stop`` into consecutive windows of at most ``seq_len`` tokens.

    Returns an ``(n, 3)`` int64 array of ``(document, global start offset, length)`` rows, in
    document order; empty documents contribute nothing.
    """
    offsets = np.asarray(corpus.doc_offsets, dtype=np.int64)
    doc_stop = corpus.n_docs if doc_stop is None else min(doc_stop, corpus.n_docs)
    docs = np.arange(doc_start, doc_stop, dtype=np.int64)
    lengths = offsets[docs + 1] - offsets[docs]
    n_windows = -(-lengths // seq_len)  # ceil; 0 for empty documents
    doc_of_window = np.repeat(docs, n_windows)
    # index of each window inside its document: 0, 1, ... restarting per document
    first = np.repeat(np.cumsum(n_windows) - n_windows, n_windows)
    within = np.arange(len(doc_of_window), dtype=np.int64) - first
    starts = offsets[doc_of_window] + within * seq_len
    ends = np.minimum(starts + seq_len, offsets[doc_of_window + 1])
    return np.stack([doc_of_window, starts, ends - starts], axis=1)


def iter_batches(
    corpus, windows: np.ndarray, batch_size: int, device: str | torch.device = "cpu"
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield ``(tokens (B, T) long, mask (B, T) bool, global_positions (B, T) long)`` per batch.

    Shorter windows are right-padded with token 0; ``mask`` is False there (and positions -1).
    Causal attention means padding never changes the activations of real tokens.
    """
    for i in range(0, len(windows), batch_size):
        chunk = windows[i : i + batch_size]
        T = int(chunk[:, 2].max())
        tokens = np.zeros((len(chunk), T), dtype=np.int64)
        positions = np.full((len(chunk), T), -1, dtype=np.int64)
        for row, (_, start, length) in enumerate(chunk):
            tokens[row, :length] = corpus.tokens[start : start + length]
            positions[row, :length] = np.arange(start, start + length)
        pos = torch.from_numpy(positions)
        yield torch.from_numpy(tokens).to(device), (pos >= 0).to(device), pos


def doc_of_position(corpus, positions: np.ndarray) -> np.ndarray:
    """Document index of each global token offset."""
    return np.searchsorted(np.asarray(corpus.doc_offsets), positions, side="right") - 1
