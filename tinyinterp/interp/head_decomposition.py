"""How much of a head's attention relative position explains, and how much each kind of key relation explains.

Every (query q, key k <= q) pair of a window falls into one *group*: its distance bucket (``q - k``
exact up to 15, then half-octave buckets) crossed with its key slot. The key slot
(:mod:`tinyinterp.interp.head_relations`) is the key's token category
(:data:`tinyinterp.interp.categories.CATEGORIES`) and its relations to the query that do not depend on
distance in tokens: ``dup``/``ind`` (an earlier copy of the query token / the token after one),
``qcat`` (the query's category), ``rank`` (most recent / second most recent key of its category; the
query itself) and three structure bits (last sentence end, start of the query's sentence, of its
paragraph). Two keys are no-op *defaults* every model has a logit for: the window's first token
(``k = 0``, the *sink*) and the query itself: small models park attention on either when there is
nothing to fetch.

Log-linear attention models are fitted to each head by maximum likelihood (the head's pattern is the
soft target, every query of every window weighs the same; ``z`` is the logit of a key, softmaxed over
the keys the query sees). Each adds named *factors* (:data:`FACTORS`) to the defaults
``z = s·[k = 0] + t·[k = q]``:

- ``distance``:       ``a[bucket(q - k)]``                               (the local family)
- ``category``:       ``b[category(k)]``                                 (the semantic family, from here)
- ``token``:          ``c·dup + e·ind``
- ``query_category``: ``f·[category(k) = category(q)]``
- ``recency``:        ``g_r[category(k)]·[rank(k) = r] + h_r·qcat·[rank(k) = r]``, r in {0, 1}:
  "the most recent noun", "the previous word of the query's part of speech": distance counted in keys
  of one category (a content-gated distance);
- ``structure``:      ``i·[last sentence end] + j·[sentence start] + l·[paragraph start]``.

:data:`MODELS` fits the base (defaults only), each factor alone, ``content`` (category + token: the
pre-factor content model, so ``content_explained`` keeps its meaning), ``semantic`` (all five semantic
factors) and ``joint`` (everything).

The fit only needs, per head, the attention mass per group summed over all queries (accumulated
while the model runs, ``(H, n_groups)``), and, shared by all heads, how many keys of each group every
query sees (a sparse ``(queries, n_groups)`` count matrix built from the tokens alone; groups no query
sees are dropped before fitting). With ``KL_m`` the mean KL divergence per query from the pattern to
model ``m``, the *explained share* of model ``m`` is ``1 - KL_m / KL_base`` (0: no better than the
defaults; 1: the pattern itself), and the *structure* of the head is ``KL_base / mean log(#visible
keys)``: the share of the uniform entropy the pattern removes beyond the defaults (0 for a uniform, a
first-token or an attend-to-itself head, 1 for a one-hot head).

Fitting is one L-BFGS run per model over all heads at once; models with few distinct groups merge
queries that see the same groups, so only the semantic and joint models work on every query (a few
minutes of one CPU core for 128 heads x 64 windows x 128 tokens).

    >>> groups = group_index(tokens, labels, flags)            # (B, T, T), once per batch
    >>> counts = QueryGroupCounts(T); counts.add(groups)
    >>> mass = group_mass(pattern, groups, counts.size)        # (H, n_groups) per batch, summed
    >>> shares = fit_decomposition(mass, entropy_sum, counts)  # dict of (H,) arrays
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.optimize
import scipy.sparse
import torch

from tinyinterp.interp.head_relations import (BOUNDARY, N_CATS, N_RANKS, N_STRUCT, PARAGRAPH, SELF_RANK, SENTENCE,
                                              pair_relations)

log = logging.getLogger(__name__)

N_EXACT = 16
"""Distances 0..15 each get their own bucket (uniform-over-last-k heads need exact distances)."""
N_REL = 2 * 2 * 2 * N_RANKS * N_STRUCT  # dup x ind x qcat x rank x struct bits
N_SLOTS = N_CATS * N_REL + 1  # category x relations, plus the sink slot (k = 0)
SINK_SLOT = N_SLOTS - 1
N_DEFAULTS = 2
"""The first columns of every model: the two no-op targets, the sink (first token) and the query itself."""
FACTORS = ("distance", "category", "token", "query_category", "recency", "structure")
"""The named factors. ``distance`` alone is the local family; the other five are the semantic family."""
SEMANTIC_FACTORS = FACTORS[1:]
MODELS = {
    "base": (), "distance": ("distance",), "content": ("category", "token"),
    **{f: (f,) for f in SEMANTIC_FACTORS},
    "semantic": SEMANTIC_FACTORS, "joint": FACTORS,
}
"""Model name -> the factors it adds to the defaults (sink and self). ``content`` is the pre-factor content model (category +
token identity), kept so ``content_explained`` means what it meant in older results."""
MAX_LOGIT = 30.0
"""Bound on every fitted parameter: a one-hot head drives its logits to infinity otherwise."""
L2 = 1e-6
"""Tiny ridge: removes the flat directions (a constant added to all buckets) without biasing the fit."""


def bucket_edges(T: int) -> np.ndarray:
    """Left edges of the distance buckets for windows of ``T`` tokens: 0..15, then 16, 24, 32, 48, 64, …"""
    edges, e = list(range(min(N_EXACT, T))), N_EXACT
    while e < T:
        edges.append(e)
        e = e + e // 2 if (e & (e - 1)) == 0 else 2 ** int(np.ceil(np.log2(e)))  # 16→24→32→48→64→96…
    return np.asarray(edges, dtype=np.int64)


def n_groups(T: int) -> int:
    return len(bucket_edges(T)) * N_SLOTS


def group_index(tokens: torch.Tensor, labels: torch.Tensor, flags: torch.Tensor | None = None) -> torch.Tensor:
    """``(B, T, T)`` group of every (query, key) pair; -1 where the key is not visible (``k > q``).

    ``tokens``/``labels`` are ``(B, T)``; labels are category indices (-1: unknown, counted as other).
    ``flags`` ``(B, T, 3)`` bool marks sentence ends, newlines and whitespace
    (:func:`tinyinterp.interp.head_relations.boundary_flags`; ``None``: punctuation ends sentences).
    """
    B, T = tokens.shape
    edges = torch.from_numpy(bucket_edges(T))
    q = torch.arange(T)
    dist = (q[:, None] - q[None, :]).clamp(min=0)
    bucket = torch.searchsorted(edges, dist, right=True) - 1  # (T, T)
    r = pair_relations(tokens, labels, flags)
    rel = r["dup"] + 2 * r["ind"] + 4 * r["qcat"] + 8 * r["rank"] + 8 * N_RANKS * r["struct"]
    slot = r["cat"] + N_CATS * rel  # (B, q, k)
    slot[:, :, 0] = SINK_SLOT
    groups = bucket[None] * N_SLOTS + slot
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    return torch.where(causal[None], groups, torch.full_like(groups, -1))


def group_mass(pattern: torch.Tensor, groups: torch.Tensor, size: int) -> torch.Tensor:
    """``(H, size)`` attention mass per group, summed over windows and queries. ``pattern`` (B, H, T, T)."""
    B, H, T, _ = pattern.shape
    valid = (groups >= 0).reshape(-1)
    idx = groups.reshape(-1)[valid]
    flat = pattern.double().permute(1, 0, 2, 3).reshape(H, -1)[:, valid]
    return torch.zeros(H, size, dtype=torch.float64).index_add_(1, idx, flat)


class QueryGroupCounts:
    """Sparse ``(queries, groups)`` matrix: how many visible keys of each group every query has."""

    def __init__(self, T: int):
        self.T, self.size = T, n_groups(T)
        self._rows: list[np.ndarray] = []
        self._cols: list[np.ndarray] = []
        self.n_queries = 0

    def add(self, groups: torch.Tensor) -> None:
        B, T, _ = groups.shape
        rows = (self.n_queries + torch.arange(B * T)).reshape(B, T, 1).expand(B, T, T)
        valid = groups >= 0
        self._rows.append(rows[valid].numpy().astype(np.int32))  # windows x T^2/2 pairs: keep them small
        self._cols.append(groups[valid].numpy().astype(np.int32))
        self.n_queries += B * T

    def matrix(self) -> scipy.sparse.csr_matrix:
        rows, cols = np.concatenate(self._rows), np.concatenate(self._cols)
        m = scipy.sparse.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(self.n_queries, self.size))
        return m.tocsr()  # duplicates summed: the count of keys per (query, group)

    def mean_log_visible(self) -> float:
        """Mean over queries of log(#visible keys): the KL of a one-hot pattern from uniform."""
        return float(np.mean(np.log(np.arange(1, self.T + 1))))  # every window has queries 0..T-1


def _factor_columns(factor: str, bucket: np.ndarray, slot: np.ndarray, nb: int) -> list[np.ndarray]:
    """The feature columns one factor gives the groups ``(bucket, slot)`` (content ones zero on the defaults)."""
    real = (slot != SINK_SLOT)[:, None]
    if factor == "distance":
        return [np.eye(nb)[bucket]]
    cat, rel = slot % N_CATS, slot // N_CATS
    bit = lambda value: (value.astype(bool)[:, None] & real).astype(float)  # noqa: E731
    cats = np.where(real, np.eye(N_CATS)[cat], 0.0)
    rank, struct, qcat = (rel // 8) % N_RANKS, rel // (8 * N_RANKS), (rel >> 2) & 1
    if factor == "category":
        return [cats]
    if factor == "token":  # the key is an earlier copy of the query token / follows one
        return [bit(rel & 1), bit((rel >> 1) & 1)]
    if factor == "query_category":
        return [bit(qcat)]
    if factor == "recency":  # the most recent / second most recent key of its category, and of the query's
        return [cats * (rank == r)[:, None] for r in (0, 1)] + [bit(qcat & (rank == r)) for r in (0, 1)]
    if factor == "structure":
        return [bit(struct & b) for b in (BOUNDARY, SENTENCE, PARAGRAPH)]
    raise ValueError(f"unknown factor {factor!r}")


def design(T: int, model: str, groups: np.ndarray | None = None) -> np.ndarray:
    """``(len(groups), P)`` features of each group under ``model`` (a key of :data:`MODELS`).

    Columns: the sink and self defaults, then each factor of the model in :data:`FACTORS` order. ``groups``: the group ids
    to describe (default: all ``n_groups(T)``).
    """
    nb = len(bucket_edges(T))
    g = np.arange(nb * N_SLOTS) if groups is None else np.asarray(groups, dtype=np.int64)
    bucket, slot = g // N_SLOTS, g % N_SLOTS
    is_self = ((slot // N_CATS) // 8 % N_RANKS == SELF_RANK) & (slot != SINK_SLOT)  # the query itself (k = q > 0)
    cols = [(slot == SINK_SLOT)[:, None].astype(float), is_self[:, None].astype(float)]
    for factor in FACTORS:
        if factor in MODELS[model]:
            cols += _factor_columns(factor, bucket, slot, nb)
    return np.concatenate(cols, axis=1)


def _collapse(phi: np.ndarray, counts: scipy.sparse.csr_matrix, mass: np.ndarray):
    """Merge groups a model cannot tell apart, and queries that then see the same keys.

    The distance model only sees (bucket, sink), so every query at the same position of any window is
    the same row (T rows instead of windows x T); the content model only sees the key slot. Returns the
    merged features, the merged count rows (sparse), each row's multiplicity, and the merged mass.
    """
    keys, first, inverse = np.unique(phi, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    merge = scipy.sparse.csr_matrix((np.ones(len(inverse)), (np.arange(len(inverse)), inverse)),
                                    shape=(len(inverse), len(keys)))
    rows = (counts @ merge).tocsr()
    mass_m = merge.T @ mass
    if len(keys) <= 128:  # few merged groups: dense rows, and identical queries become one weighted row
        uniq, mult = np.unique(rows.toarray(), axis=0, return_counts=True)
        return phi[first], scipy.sparse.csr_matrix(uniq), mult.astype(np.float64), mass_m
    return phi[first], rows, np.ones(rows.shape[0]), mass_m


def _fit(mass: np.ndarray, counts: scipy.sparse.csr_matrix, phi: np.ndarray,
         init: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-likelihood logits for every head at once: (mean cross-entropy per query (H,), params (P, H)).

    ``mass`` (G, H) attention per group summed over queries; ``counts`` (Q, G) keys per group of each
    query; ``phi`` (G, P) group features. The heads are independent problems solved as one sum.
    """
    Q = counts.shape[0]
    phi, counts, mult, mass = _collapse(phi, counts, mass)
    G, H = mass.shape
    P = phi.shape[1]
    counts_t = counts.T.tocsr()

    def loss_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        Z = phi @ theta.reshape(P, H)  # (G, H) logit of each group
        top = Z.max(0)
        E = np.exp(Z - top)
        S = counts @ E  # (rows, H) partition function of each query (up to exp(top))
        ce = (-(mass * Z).sum(0) + mult @ np.log(S) + Q * top) / Q
        grad_z = (E * (counts_t @ (mult[:, None] / S)) - mass) / Q
        grad = phi.T @ grad_z + L2 * theta.reshape(P, H)
        return float(ce.sum() + 0.5 * L2 * (theta**2).sum()), grad.reshape(-1)

    x0 = np.zeros(P * H) if init is None else np.clip(init, -MAX_LOGIT, MAX_LOGIT).reshape(-1)
    res = scipy.optimize.minimize(loss_grad, x0, jac=True, method="L-BFGS-B",
                                  bounds=[(-MAX_LOGIT, MAX_LOGIT)] * (P * H),
                                  options={"maxiter": 500, "ftol": 1e-10, "gtol": 1e-6})
    theta = res.x.reshape(P, H)
    log.debug("fit %d params x %d heads over %d groups, %d query rows: %d iterations",
              P, H, G, counts.shape[0], res.nit)
    Z = phi @ theta
    top = Z.max(0)
    ce = (-(mass * Z).sum(0) + mult @ np.log(counts @ np.exp(Z - top)) + Q * top) / Q
    return ce, theta


def fit_decomposition(mass: np.ndarray, entropy_sum: np.ndarray, counts: QueryGroupCounts) -> dict[str, np.ndarray]:
    """Explained shares of every model of :data:`MODELS` for ``H`` heads.

    ``mass`` (H, n_groups) from :func:`group_mass` over all windows, ``entropy_sum`` (H,) the summed
    pattern entropy over the same queries (nats). Returns (H,) arrays: ``structure``, ``kl_base`` (nats
    per query), ``<model>_explained`` for every model but the base (``distance_explained``,
    ``content_explained``, ``category_explained``, …, ``semantic_explained``, ``joint_explained``), and
    ``content_logits`` (H, n_categories): the content model's preference for each key category.
    """
    matrix = counts.matrix()
    used = np.unique(matrix.indices)  # groups some query sees: most (bucket, slot) pairs never occur
    matrix = matrix[:, used]
    Q = matrix.shape[0]
    mass_t = np.asarray(mass, dtype=np.float64).T[used]  # (G, H)
    entropy = np.asarray(entropy_sum, dtype=np.float64) / Q
    kl, params = {}, {}
    for m in MODELS:
        init = None
        if m == "joint":  # start from the two family fits: far fewer iterations on the big problem
            d, c = params["distance"], params["semantic"]
            n = N_DEFAULTS
            init = np.concatenate([d[:n] + c[:n] - params["base"], d[n:], c[n:]])
        ce, params[m] = _fit(mass_t, matrix, design(counts.T, m, used), init)
        kl[m] = np.maximum(ce - entropy, 0.0)
    base = kl["base"]
    structure = base / counts.mean_log_visible()
    has = structure > 1e-4  # below this the pattern is uniform-plus-sink: there is nothing to explain
    safe = np.where(has, base, 1.0)
    out = {"kl_base": base, "structure": structure}
    for m in MODELS:
        if m != "base":
            out[f"{m}_explained"] = np.where(has, np.clip(1 - kl[m] / safe, 0.0, 1.0), np.nan)
    cat_logits = params["content"][N_DEFAULTS : N_DEFAULTS + N_CATS].T  # (H, n_categories)
    out["content_logits"] = cat_logits - cat_logits.mean(1, keepdims=True)
    return out
