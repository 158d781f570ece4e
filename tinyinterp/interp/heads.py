"""Attention-head analysis: distance vs. meaning, and the local / semantic / mixed classification.

Over a sample of fixed-length windows (the first ``seq_len`` tokens of evenly spaced documents), one
hook per layer on ``blocks.{l}.attn.hook_pattern`` accumulates, for every head, the sum and the sum of
squares of its pattern over windows (``(H, T, T)``: enough to fit a distance profile afterwards without
keeping any pattern), entropy, attention on names and nouns, and TransformerLens's head-detector scores.
Per head (all averaged over windows and query positions):

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

Classification (:class:`HeadThresholds`): **local** if ``local_4 >= 0.6`` and ``distance_r2 >= 0.5`` (most
attention sits on the last few tokens and distance alone explains it); **semantic** if
``max(name_ratio, noun_ratio) >= 2``, ``local_4 < 0.5`` and ``distance_r2 < 0.5`` (it seeks content
wherever it is); otherwise **mixed** (includes attention sinks and uniform heads).

    >>> result = analyze_heads(model, corpus, HeadConfig(n_samples=64, seq_len=128))
    >>> result.by_class()["local"][:3]; result.to_frame().head()
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

from tinyinterp.errors import DataError
from tinyinterp.interp.categories import CAT, TokenCategorizer
from tinyinterp.interp.inputs import check_model_corpus, model_name, pattern_hook_names
from tinyinterp.rundir import atomic_write_json, read_json

log = logging.getLogger(__name__)

HEADS_FILE = "heads.json"
HEAD_CLASSES = ("local", "semantic", "mixed")
METRICS = (
    "mean_distance", "local_1", "local_2", "local_4", "entropy", "distance_r2", "distance_kl",
    "name_ratio", "noun_ratio", "prev_token", "duplicate_token", "induction",
)


@dataclass
class HeadThresholds:
    local_share: float = 0.6
    """local: at least this much attention within the last 4 tokens …"""
    local_r2: float = 0.5
    """… and a distance-only profile explains at least this much (R²)."""
    semantic_ratio: float = 2.0
    """semantic: attends to names or nouns at least this many times their base rate …"""
    semantic_max_local: float = 0.5
    """… with less than this within the last 4 tokens …"""
    semantic_max_r2: float = 0.5
    """… and a distance profile explaining less than this."""


@dataclass
class HeadConfig:
    n_samples: int = 64
    """Windows (one per document) in the sample."""
    seq_len: int = 128
    """Window length (capped by the context and the longest document)."""
    batch_size: int = 8
    device: str = "cpu"
    thresholds: HeadThresholds = field(default_factory=HeadThresholds)


def classify(metrics: dict[str, np.ndarray], th: HeadThresholds) -> np.ndarray:
    """(L, H) array of class names from the metric arrays."""
    content = np.fmax(np.nan_to_num(metrics["name_ratio"]), np.nan_to_num(metrics["noun_ratio"]))
    r2 = np.nan_to_num(metrics["distance_r2"], nan=0.0)
    local = (metrics["local_4"] >= th.local_share) & (r2 >= th.local_r2)
    semantic = (content >= th.semantic_ratio) & (metrics["local_4"] < th.semantic_max_local) & (r2 < th.semantic_max_r2)
    return np.where(local, "local", np.where(semantic, "semantic", "mixed"))


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

    def to_frame(self) -> pd.DataFrame:
        L, H = self.head_class.shape
        return pd.DataFrame({
            "layer": np.repeat(np.arange(L), H), "head": np.tile(np.arange(H), L),
            **{m: self.metrics[m].reshape(-1) for m in METRICS}, "head_class": self.head_class.reshape(-1),
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
        })
        return path

    @classmethod
    def load(cls, directory: str | Path) -> "HeadResult":
        d = read_json(Path(directory) / HEADS_FILE)
        return cls(
            model=d["model"], seq_len=d["seq_len"], n_samples=d["n_samples"],
            metrics={m: np.asarray(v, dtype=np.float64) for m, v in d["metrics"].items()},
            kernel=np.asarray(d["kernel"]), head_class=np.asarray(d["head_class"]),
            thresholds=HeadThresholds(**d["thresholds"]),
        )


class _HeadAccumulator:
    """Running sums for one layer's heads; :meth:`finish` turns them into the metrics."""

    def __init__(self, n_heads: int, T: int):
        self.n = 0
        self.s1 = torch.zeros(n_heads, T, T, dtype=torch.float64)
        self.s2 = torch.zeros(n_heads, T, T, dtype=torch.float64)
        self.sums = {m: torch.zeros(n_heads, dtype=torch.float64) for m in ("entropy", "name", "noun", "prev", "dup", "ind")}
        self.base = {"name": 0.0, "noun": 0.0}

    def update(self, p: torch.Tensor, tokens: torch.Tensor, is_name: torch.Tensor, is_noun: torch.Tensor) -> None:
        """``p`` (B, H, T, T) patterns; ``tokens``/``is_name``/``is_noun`` (B, T)."""
        p = p.detach().double().cpu()
        B, H, T, _ = p.shape
        self.n += B
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
        log.warning("model has no tokenizer: name/noun attention ratios are NaN and no head can be 'semantic'")
    accs = [_HeadAccumulator(model.cfg.n_heads, T) for _ in hook_names]
    batch: dict = {}

    def make_hook(layer: int):
        def hook(pattern: torch.Tensor, hook) -> None:
            accs[layer].update(pattern, batch["tokens"], batch["name"], batch["noun"])

        return hook

    hooks = [(name, make_hook(l)) for l, name in enumerate(hook_names)]
    for i in tqdm(range(0, len(starts), cfg.batch_size), desc="heads", unit="batch", disable=not progress):
        chunk = starts[i : i + cfg.batch_size]
        tokens = np.stack([np.asarray(corpus.tokens[s : s + T], dtype=np.int64) for s in chunk])
        batch["tokens"] = torch.from_numpy(tokens)
        if categorizer is not None:
            labels = torch.from_numpy(np.stack([categorizer.label_stream(row) for row in tokens]))
        else:
            labels = torch.full(tokens.shape, -1)
        batch["name"], batch["noun"] = labels == CAT["name"], labels == CAT["noun"]
        model.run_with_hooks(batch["tokens"].to(cfg.device), fwd_hooks=hooks, return_type=None)
    per_layer = [acc.finish() for acc in accs]
    metrics = {m: np.stack([pl[0][m] for pl in per_layer]) for m in METRICS}
    kernel = np.stack([pl[1] for pl in per_layer])
    return HeadResult(model_name(model), T, len(starts), metrics, kernel, classify(metrics, cfg.thresholds), cfg.thresholds)
