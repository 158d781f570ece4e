"""QK and OV circuits of attention heads, from the weights alone (TransformerLens's ``FactoredMatrix``).

For head ``(l, h)`` the *full* circuits over the vocabulary (Elhage et al. 2021, "A Mathematical
Framework for Transformer Circuits") are

- QK: ``E_q · W_Q · W_Kᵀ · E_kᵀ`` (d_vocab × d_vocab): which key tokens a query token prefers;
- OV: ``E · W_V · W_O · U`` (d_vocab × d_vocab): which output logits attending to a token raises.

**Approximation (direct path).** ``E`` is each token's embedding passed through the head's own
LayerNorm *alone* (its own mean and scale, then ``ln1.w``/``ln1.b``; positions and earlier layers
ignored), and ``U`` is ``ln_final``'s weight folded into ``W_U`` after centring (its per-position scale
ignored, which only rescales a row). That is exact for layer 0 up to the position embedding and the
direct path of later layers. Matrices are never materialised: QK/OV are ``FactoredMatrix`` products
of rank d_head, and the top entries are found in chunks of rows.

- ``copying_score``: ``Σλ / Σ|λ|`` over the eigenvalues of the full OV circuit (1: the head copies the
  attended token to the output, −1: it suppresses it; near 0: neither);
- ``self_top1``: share of tokens whose own logit is the largest in their OV row;
- ``ov_top`` / ``qk_top``: the largest entries as (source/query token, output/key token, value);
- ``qk_distance``: mean positional QK score ``W_pos[p]·W_Q·W_Kᵀ·W_pos[p-d]`` by distance d — the
  positional half of a local head's preference.

    >>> c = head_circuit(model, layer=1, head=3)
    >>> c.copying_score, c.ov_top[:5]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

DEFAULT_TOP = 20
_CHUNK = 1024  # rows of a full vocab × vocab circuit computed at once (1,024 × 10,001 floats = 41 MB)


@dataclass
class HeadCircuit:
    layer: int
    head: int
    copying_score: float
    """Σλ/Σ|λ| of the full OV circuit's eigenvalues."""
    self_top1: float
    """Share of tokens whose own output logit tops their OV row."""
    ov_top: list[tuple[str, str, float]] = field(default_factory=list)
    """(attended token, promoted output token, logit) — the largest full-OV entries."""
    qk_top: list[tuple[str, str, float]] = field(default_factory=list)
    """(query token, key token, score) — the largest full-QK entries."""
    qk_distance: list[float] = field(default_factory=list)
    """Mean positional QK score at distance 0, 1, 2, …"""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "HeadCircuit":
        data = dict(data)
        for key in ("ov_top", "qk_top"):
            data[key] = [tuple(row) for row in data.get(key, [])]
        return cls(**data)


def _ln_rows(x: torch.Tensor, ln, eps: float) -> torch.Tensor:
    """Each row through a LayerNorm on its own (TL's LN or LNPre)."""
    x = x - x.mean(-1, keepdim=True)
    x = x / (x.pow(2).mean(-1, keepdim=True) + eps).sqrt()
    if getattr(ln, "w", None) is not None:
        x = x * ln.w + ln.b
    return x


def _eps(cfg) -> float:
    return getattr(cfg, "layer_norm_eps", None) or getattr(cfg, "eps", 1e-5)


def _unembed(model) -> torch.Tensor:
    """(d_model, d_vocab): W_U with ln_final's centring and weight folded in."""
    W_U = model.W_U
    w = getattr(model.ln_final, "w", None)
    if w is not None:
        W_U = w[:, None] * W_U
    return W_U - W_U.mean(0, keepdim=True)  # centring the residual before W_U == centring W_U's rows


def _token_strs(model, ids) -> list[str]:
    tok = model.tokenizer
    return [tok.token_str(int(i)) if tok is not None else str(int(i)) for i in ids]


@torch.no_grad()
def _top_entries(left: torch.Tensor, right: torch.Tensor, top: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Largest entries of ``left @ right`` ((n, r) @ (r, m)) without materialising it: (values, rows, cols)."""
    best_v = torch.empty(0)
    best_i = torch.empty(0, dtype=torch.long)
    m = right.shape[1]
    for start in range(0, left.shape[0], _CHUNK):
        block = left[start : start + _CHUNK] @ right  # (chunk, m)
        v, flat = block.flatten().topk(min(top, block.numel()))
        best_v = torch.cat([best_v, v])
        best_i = torch.cat([best_i, flat + start * m])
        keep = best_v.topk(min(top, len(best_v))).indices
        best_v, best_i = best_v[keep], best_i[keep]
    order = best_v.argsort(descending=True)
    best_v, best_i = best_v[order], best_i[order]
    return best_v, best_i // m, best_i % m


@torch.no_grad()
def _self_top1(left: torch.Tensor, right: torch.Tensor) -> float:
    """Share of rows i of ``left @ right`` (square) whose largest entry is at column i."""
    hits = 0
    for start in range(0, left.shape[0], _CHUNK):
        block = left[start : start + _CHUNK] @ right
        rows = torch.arange(start, start + block.shape[0])
        hits += int((block.argmax(-1) == rows).sum())
    return hits / left.shape[0]


@torch.no_grad()
def copying_scores(model) -> torch.Tensor:
    """(n_layers, n_heads) eigenvalue copying scores of every head's full OV circuit."""
    from transformer_lens.FactoredMatrix import FactoredMatrix

    W_U = _unembed(model)
    scores = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
    for layer, block in enumerate(model.blocks):
        E = _ln_rows(model.W_E.float(), block.ln1, _eps(model.cfg))
        full = FactoredMatrix(E @ block.attn.W_V.float(), block.attn.W_O.float() @ W_U.float())  # (head, vocab, vocab), rank d_head
        eig = full.eigenvalues  # (head, d_head) complex
        scores[layer] = (eig.sum(-1) / eig.abs().sum(-1).clamp_min(1e-12)).real.cpu()
    return scores


@torch.no_grad()
def head_circuit(model, layer: int, head: int, top: int = DEFAULT_TOP, max_distance: int = 32) -> HeadCircuit:
    """QK/OV summary of one head (see the module docstring for what each field means)."""
    from transformer_lens.FactoredMatrix import FactoredMatrix

    cfg = model.cfg
    if not 0 <= layer < cfg.n_layers or not 0 <= head < cfg.n_heads:
        raise ValueError(f"head L{layer}H{head} does not exist (model has {cfg.n_layers} layers × {cfg.n_heads} heads)")
    eps = _eps(cfg)
    block = model.blocks[layer]
    attn = block.attn
    E = _ln_rows(model.W_E.float(), block.ln1, eps)
    W_Q, W_K, W_V, W_O = (w[head].float() for w in (attn.W_Q, attn.W_K, attn.W_V, attn.W_O))
    b_Q, b_K = attn.b_Q[head].float(), attn.b_K[head].float()
    W_U = _unembed(model).float()

    ov_left, ov_right = E @ W_V, W_O @ W_U  # (vocab, d_head), (d_head, vocab)
    eig = FactoredMatrix(ov_left, ov_right).eigenvalues
    copying = float((eig.sum() / eig.abs().sum().clamp_min(1e-12)).real)
    ov_v, ov_r, ov_c = _top_entries(ov_left, ov_right, top)
    qk_v, qk_r, qk_c = _top_entries(E @ W_Q + b_Q, (E @ W_K + b_K).T, top)

    n = min(cfg.n_ctx, 256)
    pos = model.W_pos[:n].float()
    q_pos, k_pos = pos @ W_Q, pos @ W_K  # positions only (LayerNorm ignored)
    distance = []
    for d in range(min(max_distance, n - 1) + 1):
        distance.append(float((q_pos[d:] * k_pos[: n - d]).sum(-1).mean()))

    def rows(values, a, b):
        return list(zip(_token_strs(model, a), _token_strs(model, b), (round(float(v), 4) for v in values)))

    return HeadCircuit(
        layer=layer, head=head, copying_score=copying, self_top1=_self_top1(ov_left, ov_right),
        ov_top=rows(ov_v, ov_r, ov_c), qk_top=rows(qk_v, qk_r, qk_c), qk_distance=distance,
    )
