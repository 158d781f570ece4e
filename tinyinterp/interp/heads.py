"""Attention-head analysis: distance vs. meaning, and the local / semantic / mixed classification.

Over a sample of fixed-length windows (the first ``seq_len`` tokens of evenly spaced documents), one
hook per layer on ``blocks.{l}.attn.hook_pattern`` accumulates, for every head, the sum and the sum of
squares of its pattern over windows (``(H, T, T)``: enough to fit a distance profile afterwards without
keeping any pattern), its attention mass per (distance bucket, key content) group (what the
distance/content decomposition is fitted to), entropy, attention on names and nouns, and
TransformerLens's head-detector scores. Per head (all averaged over windows and query positions):

- ``mean_distance``: expected ``q - k`` under the pattern;
- ``local_1``/``local_2``/``local_4``: attention on keys at distance ``0..w`` (the query and the w before);
- ``entropy`` (nats);
- ``distance_r2`` / ``distance_kl``: how well a distance-only profile explains the pattern. The kernel
  ``K[d]`` is the mean attention at offset ``d``; the prediction for query ``q`` is ``K[q-k]`` renormalised
  over ``k <= q``. R² is against the uniform-causal baseline, KL(pattern || prediction) is per query;
- ``name_ratio`` / ``noun_ratio``: attention on name/noun keys divided by the share of such keys among
  the visible keys (1 = no preference). Categories come from :mod:`tinyinterp.interp.categories`;
- ``prev_token`` / ``duplicate_token`` / ``induction``: ``transformer_lens.head_detector`` scores with
  its default ``"mul"`` measure (share of attention on the detection pattern), averaged over windows.

- ``structure`` and the ``*_explained`` shares: the decomposition of
  :mod:`tinyinterp.interp.head_decomposition`. Log-linear attention models are fitted to the head by
  maximum likelihood, each from named factors on top of the two no-op defaults every model has (the
  window's first token, the *sink*, and the query itself): ``distance_explained`` (a logit per relative
  position bucket: the local family), ``category_explained``, ``token_explained`` (earlier copy of the
  query token / the token after one), ``query_category_explained`` (the key has the query's category),
  ``recency_explained`` (the most recent / second most recent key of a category, or of the query's
  category), ``structure_explained`` (last sentence end, start of the query's sentence, of its
  paragraph); ``semantic_explained`` (those five together: the semantic family), ``joint_explained``
  (both families) and ``content_explained`` (category + token: the content model of older results).
  A share is the part of the defaults-only KL divergence the model removes; ``structure`` is that KL
  over the mean log number of visible keys (0: uniform, pure sink or pure self; 1: one-hot).
  ``content_category`` (in :meth:`HeadResult.to_frame`) is the key category the content model prefers most;
- ``margin``: how far the class decision sits from its nearest threshold (below);
- ``factor`` (``HeadResult.head_factor``, column ``factor``), ``factor_explained``, ``factor_margin``: the
  factor that explains the head (:func:`winning_factor`), its share alone and its lead over the runner-up.

Classification (:class:`HeadThresholds`; the paper's "local" heads attend by distance and "semantic"
heads by meaning or role). A *family* wins when it alone explains at least ``explained`` (0.5), at least
``dominance`` (0.1) more than the other family alone, and the other family adds less than
``sufficiency`` (0.1) on top of it (``joint - winner``); the head also needs ``structure >=
min_structure`` (0.1). **local**: the distance family wins; **semantic**: the semantic family wins (its
best single factor named); otherwise **mixed**: heads that need both families ("the previous token if it
is a noun, else itself": distance picks the key, the category gates it) and heads with no structure
beyond the defaults (uniform, first token, itself: they select nothing, so calling them local or
semantic would be a claim about nothing). ``margin`` is the smallest of the four slack terms of the
winning family for a local/semantic head, and minus the larger family's value for a mixed head: a
positive margin is how far (in explained share) every threshold could move against the head before its
class changes. The thresholds are round numbers chosen before looking at any model; their reasons are
in ``docs/heads.md``.

    >>> result = analyze_heads(model, corpus, HeadConfig(n_samples=64, seq_len=128))
    >>> result.by_class()["local"][:3]; result.to_frame().head()
    >>> head_metrics_from_patterns(patterns, tokens, labels).head_class   # constructed heads, no model
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from tinyinterp.io.atomic import atomic_write_json
from tinyinterp.errors import DataError
from tinyinterp.interp.categories import CAT, CATEGORIES, TokenCategorizer
from tinyinterp.interp.head_decomposition import (FACTORS, SEMANTIC_FACTORS, QueryGroupCounts, fit_decomposition, group_index,
                                                  group_mass, n_groups)
from tinyinterp.interp.head_relations import boundary_flags
from tinyinterp.interp.inputs import check_model_corpus, model_name, pattern_hook_names
from tinyinterp.runs.rundir import read_json

log = logging.getLogger(__name__)

HEADS_FILE = "heads.json"
HEAD_CLASSES = ("local", "semantic", "mixed")
FACTOR_METRICS = tuple(f"{f}_explained" for f in SEMANTIC_FACTORS) + ("semantic_explained",)
METRICS = (
    "structure", "distance_explained", "content_explained", "joint_explained", "margin",
    *FACTOR_METRICS, "factor_explained", "factor_margin",
    "mean_distance", "local_1", "local_2", "local_4", "entropy", "distance_r2", "distance_kl",
    "name_ratio", "noun_ratio", "prev_token", "duplicate_token", "induction",
)
_THRESHOLD_NAMES = ("min_structure", "explained", "dominance", "sufficiency")


@dataclass
class HeadThresholds:
    min_structure: float = 0.1
    """local/semantic: the pattern removes at least this share of the uniform entropy beyond the defaults."""
    explained: float = 0.5
    """The winning family (distance, or the semantic factors together) alone explains at least this share …"""
    dominance: float = 0.1
    """… at least this much more than the other family alone …"""
    sufficiency: float = 0.1
    """… and the other family adds less than this on top of it (joint minus winner): else it needs both."""

    def __post_init__(self):
        for name in _THRESHOLD_NAMES:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"HeadThresholds.{name}={value}: must be in [0, 1] (a share)")


@dataclass
class HeadConfig:
    n_samples: int = 64
    """Windows (one per document) in the sample."""
    seq_len: int = 128
    """Window length (capped by the context and the longest document)."""
    batch_size: int = 8
    device: str = "cpu"
    thresholds: HeadThresholds = field(default_factory=HeadThresholds)


def _share(metrics: dict[str, np.ndarray], name: str, fallback: str | None = None) -> np.ndarray:
    value = metrics.get(name, metrics.get(fallback) if fallback else None)
    return np.nan_to_num(np.asarray(value, dtype=np.float64), nan=0.0)


def class_margins(metrics: dict[str, np.ndarray], th: HeadThresholds) -> tuple[np.ndarray, np.ndarray]:
    """Per head, how far it is inside the local and the semantic rule (>= 0: the rule holds).

    Results from before the semantic factors have no ``semantic_explained``: the content model stands
    in for the family, and without a joint share the sufficiency rule holds trivially.
    """
    structure = _share(metrics, "structure") - th.min_structure
    dist = _share(metrics, "distance_explained")
    sem = _share(metrics, "semantic_explained", "content_explained")
    joint = np.maximum(dist, sem)  # the joint model nests both families; clipping only absorbs fit noise
    if "joint_explained" in metrics:
        joint = np.maximum(joint, _share(metrics, "joint_explained"))

    def rule(win, other):
        return np.minimum.reduce([structure, win - th.explained, win - other - th.dominance,
                                  th.sufficiency - (joint - win)])

    return rule(dist, sem), rule(sem, dist)


def classify(metrics: dict[str, np.ndarray], th: HeadThresholds) -> tuple[np.ndarray, np.ndarray]:
    """(L, H) class names and (L, H) margins from the metric arrays (see the module docstring)."""
    local, semantic = class_margins(metrics, th)
    classes = np.where(local >= 0, "local", np.where(semantic >= 0, "semantic", "mixed"))
    margin = np.where(local >= 0, local, np.where(semantic >= 0, semantic, -np.maximum(local, semantic)))
    return classes, margin


def winning_factor(metrics: dict[str, np.ndarray], classes: np.ndarray,
                   th: HeadThresholds) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(L, H) the factor that explains each head, its explained share, and its lead over the runner-up.

    A local head's factor is ``distance``; a semantic head's the semantic factor that explains most on
    its own. A mixed head with structure: ``distance+recency`` when it needs both families (the joint
    model adds at least ``sufficiency`` over either), ``distance/recency`` when both explain it about
    equally (no dominance), ``unexplained`` when even the joint model explains less than ``explained``;
    ``none`` without structure. The lead is the winner's share minus the best share of any other single
    factor (negative when the semantic family wins only together); for mixed heads the joint share minus
    the better family's (what combining them buys); NaN for ``none``.
    """
    shares = np.stack([_share(metrics, f"{f}_explained") for f in FACTORS], -1)  # (L, H, F)
    names = np.asarray(FACTORS, dtype=object)
    best_sem = 1 + shares[..., 1:].argmax(-1)
    win = np.where(classes == "local", 0, best_sem)
    win_share = np.take_along_axis(shares, win[..., None], -1)[..., 0]
    others = np.where(np.arange(len(FACTORS)) == win[..., None], -np.inf, shares).max(-1)
    factor = names[win].astype(object)
    explained, lead = win_share, win_share - others
    structured = np.nan_to_num(np.asarray(metrics["structure"], dtype=np.float64)) >= th.min_structure
    mixed = (classes == "mixed") & structured
    joint = _share(metrics, "joint_explained")
    family_best = np.maximum(shares[..., 0], _share(metrics, "semantic_explained"))
    pair = "distance" + np.where(joint - family_best >= th.sufficiency, "+", "/").astype(object) + names[best_sem]
    factor = np.where(mixed, np.where(joint < th.explained, "unexplained", pair), factor)
    explained = np.where(mixed, joint, explained)
    lead = np.where(mixed, joint - family_best, lead)  # what the combination adds over either family
    none = (classes == "mixed") & ~structured
    return (np.where(none, "none", factor), np.where(none, np.nan, explained), np.where(none, np.nan, lead))


@dataclass
class HeadResult:
    model: str
    seq_len: int
    n_samples: int
    metrics: dict[str, np.ndarray]
    """metric name -> (L, H) array (see module docstring)."""
    kernel: np.ndarray
    """(L, H, seq_len) mean attention by offset (the distance profile)."""
    head_class: np.ndarray
    """(L, H) 'local' | 'semantic' | 'mixed'."""
    thresholds: HeadThresholds = field(default_factory=HeadThresholds)
    content_logits: np.ndarray | None = None
    """(L, H, n_categories) the content model's logit for each key category (mean-centred per head)."""
    head_factor: np.ndarray | None = None
    """(L, H) the factor that explains the head (:func:`winning_factor`); None in results saved before it."""

    def factor(self) -> np.ndarray:
        """(L, H) each head's winning factor ('' in results saved before the factors existed)."""
        if self.head_factor is None:
            return np.full(self.head_class.shape, "", dtype=object)
        return np.asarray(self.head_factor, dtype=object)

    def content_category(self) -> np.ndarray:
        """(L, H) the key category each head's content model prefers most ('' when unknown)."""
        if self.content_logits is None:
            return np.full(self.head_class.shape, "", dtype=object)
        best = np.asarray(CATEGORIES, dtype=object)[np.asarray(self.content_logits).argmax(-1)]
        unknown = np.isnan(self.metrics.get("content_explained", np.zeros(best.shape)))  # nothing to explain
        return np.where(unknown, "", best)

    def to_frame(self) -> pd.DataFrame:
        L, H = self.head_class.shape
        missing = np.full((L, H), np.nan)  # results saved before a metric existed
        return pd.DataFrame({
            "layer": np.repeat(np.arange(L), H), "head": np.tile(np.arange(H), L),
            **{m: self.metrics.get(m, missing).reshape(-1) for m in METRICS},
            "content_category": self.content_category().reshape(-1), "head_class": self.head_class.reshape(-1),
            "factor": self.factor().reshape(-1),
        })

    def by_class(self) -> dict[str, list[tuple[int, int]]]:
        return {c: [tuple(int(i) for i in lh) for lh in np.argwhere(self.head_class == c)] for c in HEAD_CLASSES}

    def counts(self) -> dict[str, int]:
        return {c: int((self.head_class == c).sum()) for c in HEAD_CLASSES}

    def top(self, metric: str, k: int = 10) -> pd.DataFrame:
        return self.to_frame().sort_values(metric, ascending=False, kind="stable").head(k).reset_index(drop=True)

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / HEADS_FILE
        atomic_write_json(path, {
            "model": self.model, "seq_len": self.seq_len, "n_samples": self.n_samples,
            "metrics": {m: np.round(v, 6).tolist() for m, v in self.metrics.items()},
            "kernel": np.round(self.kernel, 6).tolist(), "head_class": self.head_class.tolist(),
            "thresholds": dataclasses.asdict(self.thresholds),
            "content_logits": None if self.content_logits is None else np.round(self.content_logits, 4).tolist(),
            "head_factor": None if self.head_factor is None else np.asarray(self.head_factor).tolist(),
        })
        return path

    @classmethod
    def load(cls, directory: str | Path) -> "HeadResult":
        d = read_json(Path(directory) / HEADS_FILE)
        return cls(
            model=d["model"], seq_len=d["seq_len"], n_samples=d["n_samples"],
            metrics={m: np.asarray(v, dtype=np.float64) for m, v in d["metrics"].items()},
            kernel=np.asarray(d["kernel"]), head_class=np.asarray(d["head_class"]),
            thresholds=HeadThresholds(**{k: v for k, v in d["thresholds"].items() if k in _THRESHOLD_FIELDS}),
            content_logits=None if d.get("content_logits") is None else np.asarray(d["content_logits"]),
            head_factor=None if d.get("head_factor") is None else np.asarray(d["head_factor"], dtype=object),
        )


_THRESHOLD_FIELDS = {f.name for f in dataclasses.fields(HeadThresholds)}  # older files carry other fields


class _HeadAccumulator:
    """Running sums for one layer's heads; :meth:`finish` turns them into the metrics."""

    def __init__(self, n_heads: int, T: int):
        self.n = 0
        self.mass = torch.zeros(n_heads, n_groups(T), dtype=torch.float64)  # attention per decomposition group
        self.s1 = torch.zeros(n_heads, T, T, dtype=torch.float64)
        self.s2 = torch.zeros(n_heads, T, T, dtype=torch.float64)
        self.sums = {m: torch.zeros(n_heads, dtype=torch.float64) for m in ("entropy", "name", "noun", "prev", "dup", "ind")}
        self.base = {"name": 0.0, "noun": 0.0}

    def update(self, p: torch.Tensor, tokens: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor) -> None:
        """``p`` (B, H, T, T) patterns; ``tokens``/``labels`` (B, T); ``groups`` (B, T, T) from :func:`group_index`."""
        p = p.detach().double().cpu()
        B, H, T, _ = p.shape
        is_name, is_noun = labels == CAT["name"], labels == CAT["noun"]
        self.n += B
        self.mass += group_mass(p, groups, self.mass.shape[1])
        self.s1 += p.sum(0)
        self.s2 += (p * p).sum(0)
        self.sums["entropy"] += -(p * p.clamp_min(1e-30).log()).sum(-1).sum((0, 2))
        visible = torch.arange(1, T + 1, dtype=torch.float64)  # keys visible to query q
        for key, mask in (("name", is_name), ("noun", is_noun)):
            m = mask.double()
            self.sums[key] += torch.einsum("bhqk,bk->h", p, m)
            self.base[key] += float((m.cumsum(-1) / visible).sum())
        self.sums["prev"] += p.diagonal(offset=-1, dim1=-2, dim2=-1).sum((0, 2))
        same = tokens[:, :, None] == tokens[:, None, :]  # (B, q, k)
        dup = (same & torch.ones(T, T, dtype=torch.bool).tril(-1)).double()
        ind = torch.zeros_like(dup)
        ind[:, :, 1:] = dup[:, :, :-1]  # key right after an earlier copy of the query token
        self.sums["dup"] += torch.einsum("bhqk,bqk->h", p, dup)
        self.sums["ind"] += torch.einsum("bhqk,bqk->h", p, ind)

    def finish(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        n, (H, T, _) = self.n, self.s1.shape
        nq = n * T  # (window, query) pairs
        mean = self.s1 / n  # (H, T, T) mean pattern
        q = torch.arange(T)
        dist = (q[:, None] - q[None, :]).clamp(min=0).double()  # (T, T); masked entries carry no attention
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        out = {"mean_distance": (mean * dist).sum((1, 2)) / T}
        for w in (1, 2, 4):
            out[f"local_{w}"] = (mean * ((dist <= w) & causal)).sum((1, 2)) / T
        out["entropy"] = self.sums["entropy"] / nq
        # distance kernel K[d] = mean over queries q >= d of mean[q, q - d]
        kernel = torch.stack([mean.diagonal(offset=-d, dim1=-2, dim2=-1).mean(-1) for d in range(T)], -1)  # (H, T)
        pred = kernel[:, dist.long()] * causal  # (H, T, T): K[q - k] on the causal part
        pred = pred / pred.sum(-1, keepdim=True).clamp_min(1e-30)
        uniform = causal.double() / causal.sum(-1, keepdim=True)
        ss_res = (self.s2 - 2 * self.s1 * pred + n * pred**2)[:, causal].sum(-1)
        ss_tot = (self.s2 - 2 * self.s1 * uniform + n * uniform**2)[:, causal].sum(-1)
        out["distance_r2"] = torch.where(ss_tot > 1e-12, 1 - ss_res / ss_tot.clamp_min(1e-30), torch.nan)
        cross = (self.s1 * pred.clamp_min(1e-30).log())[:, causal].sum(-1)
        out["distance_kl"] = (-self.sums["entropy"] - cross) / nq
        for key in ("name", "noun"):
            base = self.base[key] / nq
            out[f"{key}_ratio"] = self.sums[key] / nq / base if base > 0 else torch.full((H,), torch.nan)
        out["prev_token"] = self.sums["prev"] / nq
        out["duplicate_token"] = self.sums["dup"] / nq
        out["induction"] = self.sums["ind"] / nq
        return {k: v.numpy() for k, v in out.items()}, kernel.numpy()


def sample_windows(corpus, n_samples: int, seq_len: int) -> tuple[np.ndarray, int]:
    """Start offsets of ``n_samples`` evenly spaced documents with >= T tokens, and T."""
    offsets = np.asarray(corpus.doc_offsets, dtype=np.int64)
    lengths = np.diff(offsets)
    T = int(min(seq_len, lengths.max(initial=0)))
    if T < 2:
        raise DataError(f"{getattr(corpus, 'path', 'corpus')}: documents are too short for head analysis (need >= 2 tokens)")
    eligible = np.nonzero(lengths >= T)[0]
    picks = np.unique(np.linspace(0, len(eligible) - 1, min(n_samples, len(eligible))).round().astype(np.int64))
    return offsets[eligible[picks]], T


@torch.no_grad()
def analyze_heads(model, corpus, config: HeadConfig | None = None, progress: bool = True) -> HeadResult:
    """Metrics and class of every attention head of ``model`` over a sample of ``corpus``."""
    cfg = config or HeadConfig()
    hook_names = pattern_hook_names(model)
    check_model_corpus(model, corpus)
    starts, T = sample_windows(corpus, cfg.n_samples, min(cfg.seq_len, model.cfg.n_ctx))
    tokenizer = getattr(model, "tokenizer", None)
    categorizer = TokenCategorizer(tokenizer) if tokenizer is not None else None
    if categorizer is None:
        log.warning("model has no tokenizer: name/noun ratios are NaN; content is only token identity (dup/induction)")
    accs = [_HeadAccumulator(model.cfg.n_heads, T) for _ in hook_names]
    counts = QueryGroupCounts(T)
    batch: dict = {}

    def make_hook(layer: int):
        def hook(pattern: torch.Tensor, hook) -> None:
            accs[layer].update(pattern, batch["tokens"], batch["labels"], batch["groups"])

        return hook

    hooks = [(name, make_hook(l)) for l, name in enumerate(hook_names)]
    for i in tqdm(range(0, len(starts), cfg.batch_size), desc="heads", unit="batch", disable=not progress):
        chunk = starts[i : i + cfg.batch_size]
        tokens = np.stack([np.asarray(corpus.tokens[s : s + T], dtype=np.int64) for s in chunk])
        batch["tokens"] = torch.from_numpy(tokens)
        if categorizer is not None:
            labels = np.stack([categorizer.label_stream(row) for row in tokens])
        else:
            labels = np.full(tokens.shape, -1)
        flags = torch.from_numpy(boundary_flags(tokens, labels, categorizer))
        batch["labels"] = torch.from_numpy(labels)
        batch["groups"] = group_index(batch["tokens"], batch["labels"], flags)
        counts.add(batch["groups"])
        model.run_with_hooks(batch["tokens"].to(cfg.device), fwd_hooks=hooks, return_type=None)
    return _result(model_name(model), accs, counts, len(starts), cfg.thresholds)


def _result(name: str, accs: list[_HeadAccumulator], counts: QueryGroupCounts, n_samples: int,
            thresholds: HeadThresholds) -> HeadResult:
    """Finish every layer's sums, fit the decomposition of all heads at once, classify."""
    per_layer = [acc.finish() for acc in accs]
    metrics = {m: np.stack([pl[0][m] for pl in per_layer]) for m in METRICS if m in per_layer[0][0]}
    L, H = len(accs), accs[0].mass.shape[0]
    mass = torch.cat([acc.mass for acc in accs]).numpy()  # (L*H, groups)
    entropy = torch.cat([acc.sums["entropy"] for acc in accs]).numpy()
    log.info("fitting distance/content attention models to %d heads", L * H)
    parts = fit_decomposition(mass, entropy, counts)
    for m, value in parts.items():
        if m not in ("content_logits", "kl_base"):
            metrics[m] = value.reshape(L, H)
    head_class, metrics["margin"] = classify(metrics, thresholds)
    factor, metrics["factor_explained"], metrics["factor_margin"] = winning_factor(metrics, head_class, thresholds)
    kernel = np.stack([pl[1] for pl in per_layer])
    return HeadResult(name, counts.T, n_samples, metrics, kernel, head_class, thresholds,
                      parts["content_logits"].reshape(L, H, -1), factor)


def head_metrics_from_patterns(patterns, tokens, labels=None, thresholds: HeadThresholds | None = None,
                               name: str = "patterns", tokenizer=None, categorizer=None) -> HeadResult:
    """Metrics and classes of heads given their patterns directly (no model), e.g. constructed heads.

    ``patterns``: ``(B, H, T, T)`` for one layer, or ``(B, L, H, T, T)``; rows sum to 1 over keys
    ``k <= q``. ``tokens``: ``(B, T)`` token ids; ``labels``: ``(B, T)`` category indices of
    :data:`tinyinterp.interp.categories.CATEGORIES` (``None``: from the tokenizer if one is given, else
    unknown). ``tokenizer`` (or a ready ``categorizer``, :class:`TokenCategorizer`) decides sentence and
    paragraph ends for the structure factor, as :func:`analyze_heads` does; without either, every
    punctuation token ends a sentence. Same metrics as :func:`analyze_heads`.
    """
    p = torch.as_tensor(patterns, dtype=torch.float64)
    p = p[:, None] if p.dim() == 4 else p
    tokens = torch.as_tensor(tokens, dtype=torch.long)
    if p.dim() != 5 or p.shape[-1] != p.shape[-2] or tokens.shape != (p.shape[0], p.shape[-1]):
        raise DataError(f"patterns {tuple(p.shape)} / tokens {tuple(tokens.shape)}: need (B, [L,] H, T, T) and (B, T)")
    if categorizer is None and tokenizer is not None:
        categorizer = TokenCategorizer(tokenizer)
    if labels is None:
        labels = (np.stack([categorizer.label_stream(r) for r in tokens.numpy()]) if categorizer is not None
                  else np.full(tokens.shape, -1))
    labels = torch.as_tensor(labels, dtype=torch.long)
    if categorizer is None:
        log.warning("no tokenizer: every punctuation token counts as a sentence end for the structure factor "
                    "(pass tokenizer= or categorizer= for real sentence and paragraph boundaries)")
    flags = torch.from_numpy(boundary_flags(tokens.numpy(), labels.numpy(), categorizer))
    B, L, H, T, _ = p.shape
    groups = group_index(tokens, labels, flags)
    counts = QueryGroupCounts(T)
    counts.add(groups)
    accs = [_HeadAccumulator(H, T) for _ in range(L)]
    for layer, acc in enumerate(accs):
        acc.update(p[:, layer], tokens, labels, groups)
    return _result(name, accs, counts, B, thresholds or HeadThresholds())
