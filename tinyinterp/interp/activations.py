"""The one activation pass: run a model over token windows in batches and capture the hooks asked for,
stopping the forward right after the last requested layer.

Every analysis that needs activations (neuron index, neuron search, neuron queries, explanation
records, the app's neuron pages; later sparse-dictionary features) goes through here. Requests are
hook names (``"blocks.3.hook_resid_pre"``, any name in ``model.hook_dict``) or ``(layer, kind)`` pairs
in TransformerLens's shorthand (``(0, "mlp_post")``, ``(2, "resid_pre")``, ``(1, "pattern")``; see
``transformer_lens.utilities.get_act_name``). Nothing after the last requested hook runs: a model
whose forward takes ``stop_at_layer`` (our ``HookedTransformer``, the TransformerBridge) gets it, and
on every model the hook that fires last raises an exception that ends the forward there (so the
rest of that block is skipped too, and a model without ``stop_at_layer`` stops all the same). A
request outside the blocks (``ln_final.hook_normalized``) runs every block but skips the unembedding.

Windows are right-padded to the longest in the batch (token 0, ``mask`` False); attention is causal,
so padding never changes the activations of real tokens. ``reduce(name, acts, batch)`` runs inside
the hook as each activation is produced and its result is what the batch keeps: select a few
neurons, move to the CPU, or fold into running statistics and keep nothing (``None``), so a pass
over all layers of a large model never holds every layer's activations at once.

    >>> windows = document_windows(corpus, seq_len=128)
    >>> for batch in iter_activations(model, corpus, windows, [(0, "mlp_post")], batch_size=16):
    ...     batch.acts["blocks.0.mlp.hook_post"]          # (B, T, d_mlp); batch.mask, batch.positions
    >>> sequence_activations(model, [ids], ["blocks.0.mlp.hook_post"])[0]["blocks.0.mlp.hook_post"]  # (T, d_mlp)
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Iterator, Sequence, Union

import numpy as np
import torch
from transformer_lens.utilities import get_act_name

from tinyinterp.interp.inputs import check_layer_neuron, iter_batches, require_hooks

HookRequest = Union[str, tuple[int, str]]
"""A hook name, or ``(layer, kind)`` in TransformerLens shorthand (``(3, "mlp_post")``)."""

_BLOCK = re.compile(r"blocks\.(\d+)\.")
_BEFORE_BLOCKS = ("hook_embed", "hook_pos_embed", "hook_tokens")
_HEAD_BY_POSITION = ("hook_pattern", "hook_attn_scores")  # (batch, head, query_pos, key_pos)


@dataclass
class ActivationBatch:
    """One batch of windows and the activations captured on it (``acts``: hook name -> what ``reduce`` kept)."""

    windows: np.ndarray
    """The batch's rows of the window array: (B, 3) ``(document, global start, length)``."""
    tokens: torch.Tensor
    """(B, T) long, right-padded with 0."""
    mask: torch.Tensor
    """(B, T) bool: True on real tokens."""
    positions: torch.Tensor
    """(B, T) long: global corpus offset of each token (-1 on padding); always on the CPU."""
    acts: dict[str, torch.Tensor] = field(default_factory=dict)
    memo: dict = field(default_factory=dict)
    """Per-batch values a ``reduce`` computes once and shares between its hooks (e.g. row indices)."""

    @cached_property
    def flat_mask(self) -> torch.Tensor:
        """(B * T,) bool on the CPU: which flattened rows are real tokens."""
        return self.mask.reshape(-1).cpu()

    @cached_property
    def real_positions(self) -> torch.Tensor:
        """(n_real,) global offsets of the real tokens, in the order of :meth:`real_rows`."""
        return self.positions.reshape(-1)[self.flat_mask]

    def real_rows(self, acts: torch.Tensor) -> torch.Tensor:
        """(n_real, ...) rows of a (B, T, ...) activation at the real tokens (padding dropped)."""
        flat = acts.reshape(-1, *acts.shape[2:])
        return flat if bool(self.flat_mask.all()) else flat[self.flat_mask.to(flat.device)]


Reduce = Callable[[str, torch.Tensor, ActivationBatch], Union[torch.Tensor, None]]


class _StopForward(Exception):
    """Raised by the hook that fires last, for models whose forward cannot be told where to stop."""


def resolve_hooks(model, requests: Sequence[HookRequest]) -> list[str]:
    """Hook names of ``requests`` (duplicates dropped, order kept); one-line errors for a layer outside
    the model or a name the model does not have."""
    names: list[str] = []
    for request in requests:
        if isinstance(request, str):
            name = request
        else:
            layer, kind = request
            check_layer_neuron(model.cfg, int(layer))
            name = get_act_name(kind, int(layer))
        if name not in names:
            names.append(name)
    if not names:
        raise ValueError("resolve_hooks: request at least one hook")
    return require_hooks(model, names)


def hook_layer(name: str) -> int | None:
    """The block a hook belongs to: ``k`` for ``blocks.k.*``, -1 before the blocks (embeddings), None after
    them (``ln_final``, ``unembed``)."""
    match = _BLOCK.match(name)
    if match:
        return int(match.group(1))
    return -1 if name in _BEFORE_BLOCKS else None


def stop_layer(names: Sequence[str]) -> int | None:
    """``stop_at_layer`` that still runs every requested hook: one past the last requested block (0 =
    embeddings only), None when a request lies after the blocks."""
    layers = [hook_layer(n) for n in names]
    return None if any(l is None for l in layers) else max(layers) + 1


def _takes_stop_at_layer(model) -> bool:
    target = getattr(model, "bridge", model)  # ExternalModel forwards run_with_hooks to its bridge
    if not hasattr(target, "blocks"):  # the bridge's stop needs a block stack
        return False
    try:
        return "stop_at_layer" in inspect.signature(target.forward).parameters
    except (TypeError, ValueError):
        return False


def model_device(model) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    try:
        return next(iter(model.parameters())).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


def _keep(name: str, acts: torch.Tensor, batch: ActivationBatch | None) -> torch.Tensor:
    return acts.detach()


@torch.no_grad()
def run_activations(model, tokens: torch.Tensor, names: Sequence[str], reduce: Reduce | None = None,
                    batch: ActivationBatch | None = None, stop_early: bool = True) -> dict[str, torch.Tensor]:
    """One forward of ``tokens`` (B, T) capturing ``names`` (already resolved hook names); returns
    ``{name: reduce(name, acts, batch)}`` for every name whose ``reduce`` kept something."""
    reduce = reduce or _keep
    got: dict[str, torch.Tensor] = {}
    pending = set(names)
    stop = stop_layer(names) if stop_early else None
    kwargs = {"return_type": None}
    if stop is not None and _takes_stop_at_layer(model):
        kwargs["stop_at_layer"] = stop  # nothing after the last requested block is hooked or run
    # ... and the hook that fires last ends the forward at once: this skips the rest of its own block
    # (after mlp.hook_post, the MLP's output matmul: a third of the block) and stops models without
    # stop_at_layer, or with a request after the blocks, before the unembedding.
    raise_when_done = stop_early

    def make_hook(name: str):
        def hook(acts: torch.Tensor, hook) -> None:
            kept = reduce(name, acts, batch)
            if kept is not None:
                got[name] = kept
            pending.discard(name)
            if raise_when_done and not pending:
                raise _StopForward

        return hook

    try:
        model.run_with_hooks(tokens, fwd_hooks=[(n, make_hook(n)) for n in names], **kwargs)
    except _StopForward:
        pass
    return got


def iter_activations(model, corpus, windows: np.ndarray, requests: Sequence[HookRequest], *, batch_size: int = 16,
                     device: str | torch.device | None = None, reduce: Reduce | None = None,
                     stop_early: bool = True) -> Iterator[ActivationBatch]:
    """Run ``windows`` ((n, 3) ``(document, global start, length)`` rows of ``corpus.tokens``, e.g.
    :func:`~tinyinterp.interp.inputs.document_windows`) through ``model`` ``batch_size`` at a time and
    yield one :class:`ActivationBatch` per batch, in window order. ``device``: where the tokens go
    (default: the model's). ``stop_early=False`` runs every block (for comparisons)."""
    if batch_size < 1:
        raise ValueError(f"iter_activations: batch_size must be positive, got {batch_size}")
    names = resolve_hooks(model, requests)
    device = model_device(model) if device is None else device
    windows = np.asarray(windows, dtype=np.int64).reshape(-1, 3)
    for i, (tokens, mask, positions) in enumerate(iter_batches(corpus, windows, batch_size, device)):
        batch = ActivationBatch(windows[i * batch_size: (i + 1) * batch_size], tokens, mask, positions)
        batch.acts = run_activations(model, tokens, names, reduce, batch, stop_early)
        yield batch


class _Sequences:
    """Token sequences laid end to end, read like a corpus (``tokens``) by :func:`iter_batches`."""

    def __init__(self, sequences: Sequence[Sequence[int]]):
        lengths = np.array([len(s) for s in sequences], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        self.tokens = np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences]) if len(sequences) else np.zeros(0, np.int64)
        self.windows = np.stack([np.arange(len(lengths)), starts, lengths], axis=1)


def sequence_activations(model, sequences: Sequence[Sequence[int]], requests: Sequence[HookRequest], *,
                         batch_size: int = 16, reduce: Reduce | None = None,
                         stop_early: bool = True) -> list[dict[str, torch.Tensor]]:
    """Activations of each token sequence (a list of ids; none empty), batched: one dict per sequence,
    ``{name: (T_i, ...)}`` with the padding cut off."""
    if any(len(s) == 0 for s in sequences):
        raise ValueError("sequence_activations: every sequence needs at least one token")
    source = _Sequences(sequences)
    out: list[dict[str, torch.Tensor]] = []
    for batch in iter_activations(model, source, source.windows, requests, batch_size=batch_size, reduce=reduce,
                                  stop_early=stop_early):
        for row, length in enumerate(batch.windows[:, 2].tolist()):
            out.append({name: trim_padding(name, acts[row], length) for name, acts in batch.acts.items()})
    return out


def trim_padding(name: str, acts: torch.Tensor, length: int) -> torch.Tensor:
    """One row's activation without its padding: (T, ...) -> (length, ...); attention scores and
    patterns (head, query, key) are cut on both position axes."""
    if name.endswith(_HEAD_BY_POSITION):
        return acts[:, :length, :length]
    return acts[:length]
