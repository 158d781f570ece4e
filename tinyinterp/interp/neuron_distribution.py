"""Streaming activation distribution of every MLP neuron: a fixed-edge histogram, one random example per
histogram bin (so examples can be drawn from any activation quantile afterwards), and the most negative
activations. Updated in the same pass as the neuron index's top-k (:mod:`.neuron_index`), memory fixed
by the model's size, never by the corpus's.

**Bin edges** are fixed and data-independent: a symmetric log grid with two bins per octave,
``|x|`` in ``[2^-8, 2^7)`` (0.0039 … 128) split at ``2^e`` and ``1.5 * 2^e``; one *zero* bin for
``|x| < 2^-8`` and one overflow bin per sign for ``|x| >= 128``: :data:`N_BINS` = 63 bins,
:func:`bin_edges` gives the 62 finite edges. Why this grid and not edges from a first batch or a
linear range: MLP activations are heavy-tailed (most tokens near 0, a few large) and their scale
differs by orders of magnitude between neurons and between a 1M-parameter model and GPT-2 XL, so a
log grid gives the same *relative* resolution (≤ 1.5x per bin) to every neuron with no first pass;
edges that do not depend on the data make shards and resumed builds merge exactly (a first-batch
choice would depend on document order); and the bin of a float32 is read straight off its bit
pattern (exponent + top mantissa bit), exact at the edges and far cheaper than ``bucketize``.
Values between ``2^-8`` and 0 (GELU's negative tail far from its minimum) are "zero" for this purpose.

**Examples per bin** are a reservoir of size one per (neuron, bin): every token gets a pseudo-random
priority from its global corpus position (:func:`position_priority`, a fixed hash), and each bin keeps
its highest-priority token. That is a uniform random sample of the bin's tokens, identical whatever
the batching and after a resume. A quantile query (:meth:`NeuronQueries.quantile_examples`) finds the
bin that holds the quantile from the cumulative histogram and returns that bin's example.

**Most negative** activations: a running bottom-k merged like the top-k.

State tensors (``(L, N, ...)``, stored in the index's progress file and in ``index.safetensors``):
``hist_counts`` i64 (L, N, 63), ``sample_positions`` i64 (L, N, 63) (-1: empty bin),
``sample_values`` f32 (L, N, 63) (0 where empty), ``bottom_values`` f32 (L, N, k_negative) ascending (``+inf``: none),
``bottom_positions`` i64 (L, N, k_negative). About 20 bytes x 63 bins per neuron.
"""

from __future__ import annotations

import numpy as np
import torch

BINS_PER_SIDE = 31
"""Magnitude classes per sign: 30 half-octave bins from 2^-8 to 2^7, plus the overflow bin."""
ZERO_BIN = BINS_PER_SIDE
N_BINS = 2 * BINS_PER_SIDE + 1
_LOW_EXP = -8  # the smallest non-zero magnitude bin starts at 2^-8
# float32 bits >> 22 = 2 * (exponent + 127) + top mantissa bit: the half-octave of |x|
_SHIFT_OFFSET = 2 * (_LOW_EXP + 127) - 1
DISTRIBUTION_KEYS = ("hist_counts", "sample_positions", "sample_values", "bottom_values", "bottom_positions")


def magnitude_edges() -> np.ndarray:
    """The 31 lower edges of the non-zero magnitude classes: 2^-8, 1.5*2^-8, 2^-7, …, 1.5*2^6, 2^7."""
    c = np.arange(BINS_PER_SIDE)
    return np.ldexp(np.where(c % 2 == 1, 1.5, 1.0), _LOW_EXP + c // 2)


def bin_edges() -> np.ndarray:
    """The 62 finite edges between the 63 bins, ascending. Bin 0 is ``x <= -128``, bin 31 (the zero bin) is
    ``|x| < 2^-8``, bin 62 is ``x >= 128``; a negative bin is closed at its edge nearer zero
    (``(-b, -a]``), a positive one at its lower edge (``[a, b)``)."""
    m = magnitude_edges()
    return np.concatenate([-m[::-1], m])


def bin_ranges() -> np.ndarray:
    """(63, 2) lower/upper value of each bin (±inf for the overflow bins), for display."""
    e = bin_edges()
    return np.stack([np.concatenate([[-np.inf], e]), np.concatenate([e, [np.inf]])], axis=1)


def activation_bins(acts: torch.Tensor) -> torch.Tensor:
    """Bin index (int32, same shape) of each float32 activation, read from its bit pattern."""
    bits = acts.contiguous().view(torch.int32)
    sign = bits >> 31  # arithmetic shift: 0 for +, -1 for - (the sign bit)
    cls = ((bits & 0x7FFFFFFF) >> 22).sub_(_SHIFT_OFFSET).clamp_(0, BINS_PER_SIDE)  # 0 = zero bin
    # ZERO_BIN + cls for x >= 0, ZERO_BIN - cls for x < 0: (cls ^ sign) - sign negates where sign = -1.
    # In-place integer ops only: torch.where here costs 5x the whole rest.
    return cls.bitwise_xor_(sign).sub_(sign).add_(ZERO_BIN)


def position_priority(positions: np.ndarray | torch.Tensor) -> np.ndarray:
    """A fixed pseudo-random priority (int64 >= 0) per global token position (splitmix64 finaliser); -1 stays -1."""
    pos = np.asarray(positions, dtype=np.int64)
    x = pos.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x = x ^ (x >> np.uint64(31))
    return np.where(pos >= 0, (x >> np.uint64(1)).astype(np.int64), -1)


def batch_order(positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For the tokens of one batch: ``order`` (token indices, highest priority first) and ``rank`` (inverse)."""
    prio = torch.from_numpy(position_priority(positions.cpu().numpy()))
    order = torch.argsort(prio, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order))
    return order, rank


def init_distribution(n_layers: int, d_mlp: int, k_negative: int) -> dict[str, torch.Tensor]:
    return {
        "hist_counts": torch.zeros(n_layers, d_mlp, N_BINS, dtype=torch.int64),
        "sample_positions": torch.full((n_layers, d_mlp, N_BINS), -1, dtype=torch.int64),
        "sample_values": torch.zeros(n_layers, d_mlp, N_BINS),  # 0 where the bin is empty (position -1)
        "bottom_values": torch.full((n_layers, d_mlp, k_negative), float("inf")),
        "bottom_positions": torch.full((n_layers, d_mlp, k_negative), -1, dtype=torch.int64),
    }


def update_distribution(t: dict[str, torch.Tensor], layer: int, acts: torch.Tensor, positions: torch.Tensor,
                        order: torch.Tensor, rank: torch.Tensor) -> None:
    """Fold ``acts`` (n, N) float32 at global ``positions`` (n,) into layer ``layer`` of the state ``t``."""
    n, N = acts.shape
    bins = activation_bins(acts).long()  # (n, N)
    # Scatter along the token axis into (bin, neuron) tables: no per-neuron offsets, no copy of the ranks.
    t["hist_counts"][layer] += torch.zeros(N_BINS, N, dtype=torch.int64).scatter_add_(
        0, bins, torch.ones(1, 1, dtype=torch.int64).expand(n, N)).T
    # Reservoir of one per (neuron, bin): the batch's best-ranked token per cell, kept if its priority
    # beats the stored one's.
    best = torch.full((N_BINS, N), n, dtype=torch.int64).scatter_reduce_(0, bins, rank[:, None].expand(n, N), "amin")
    b, neuron = torch.nonzero(best < n, as_tuple=True)
    tok = order[best[b, neuron]]
    new_pos = positions[tok]
    stored = t["sample_positions"][layer]  # (N, N_BINS)
    better = torch.from_numpy(position_priority(new_pos) > position_priority(stored[neuron, b]))
    b, neuron, tok = b[better], neuron[better], tok[better]
    stored[neuron, b] = new_pos[better]
    t["sample_values"][layer][neuron, b] = acts[tok, neuron]
    # Running bottom-k, merged exactly like the index's top-k.
    k = t["bottom_values"].shape[-1]
    vals, idx = torch.topk(acts, min(k, n), dim=0, largest=False)  # (kk, N)
    cand_vals = torch.cat([t["bottom_values"][layer], vals.T], dim=1)
    cand_pos = torch.cat([t["bottom_positions"][layer], positions[idx].T], dim=1)
    best_vals, best_idx = torch.topk(cand_vals, k, dim=1, largest=False)  # sorted ascending
    t["bottom_values"][layer] = best_vals
    t["bottom_positions"][layer] = torch.gather(cand_pos, 1, best_idx)


def finalize_distribution(t: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: t[key] for key in DISTRIBUTION_KEYS}


def quantile_bins(counts: np.ndarray, quantiles) -> list[tuple[int, float, float]]:
    """For each quantile q: (bin holding it, share of tokens below that bin, share up to its end).

    The q-quantile is the smallest value with at least a share q of the tokens at or below it, so its
    bin is the first whose cumulative share reaches q."""
    counts = np.asarray(counts, dtype=np.int64)
    cum = np.cumsum(counts)
    total = int(cum[-1]) if len(cum) else 0
    if total <= 0:
        return []
    out = []
    for q in quantiles:
        target = min(max(int(np.ceil(float(q) * total)), 1), total)  # tokens at or below the quantile
        b = int(np.searchsorted(cum, target, side="left"))
        out.append((b, float(cum[b - 1]) / total if b > 0 else 0.0, float(cum[b]) / total))
    return out
