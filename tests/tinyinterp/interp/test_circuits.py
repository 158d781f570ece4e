"""QK/OV circuits: chunked top entries equal a brute-force full matrix; a planted copying head scores ~1."""

from __future__ import annotations

import pytest
import torch

from tinyinterp.models.config import ModelConfig
from tinyinterp.interp import circuits
from tinyinterp.interp.circuits import HeadCircuit, copying_scores, head_circuit
from tinyinterp.models.transformer import HookedTransformer


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    cfg = ModelConfig(d_model=32, n_layers=2, n_heads=4, d_vocab=300, n_ctx=64, tie_embeddings=True, unembed_bias=False, **kw)
    return HookedTransformer(cfg).eval()


def test_top_entries_match_the_full_matrix(monkeypatch):
    monkeypatch.setattr(circuits, "_CHUNK", 37)  # force many chunks
    model = _model()
    c = head_circuit(model, layer=1, head=2, top=15)
    block = model.blocks[1]
    E = circuits._ln_rows(model.W_E, block.ln1, 1e-5)
    full_ov = (E @ block.attn.W_V[2]) @ (block.attn.W_O[2] @ circuits._unembed(model))
    expected = full_ov.flatten().topk(15).values
    assert torch.allclose(torch.tensor([v for _, _, v in c.ov_top]), expected, atol=1e-3)
    full_qk = (E @ block.attn.W_Q[2] + block.attn.b_Q[2]) @ (E @ block.attn.W_K[2] + block.attn.b_K[2]).T
    assert abs(c.qk_top[0][2] - float(full_qk.max().detach())) < 1e-3
    diag_hits = float((full_ov.argmax(-1) == torch.arange(300)).float().mean())
    assert c.self_top1 == pytest.approx(diag_hits)
    assert len(c.qk_distance) == 33
    assert HeadCircuit.from_dict(c.to_dict()) == c


def test_planted_copying_head_scores_high_and_random_heads_do_not():
    model = _model(seed=1)
    with torch.no_grad():
        # Head 0 of layer 0: W_V·W_O = a projection P, so the full OV circuit is E·P·Eᵀ up to centring — copying.
        basis = torch.linalg.qr(torch.randn(32, 8)).Q  # (d_model, d_head), orthonormal columns
        model.blocks[0].attn.W_V[0] = basis
        model.blocks[0].attn.W_O[0] = basis.T
        model.blocks[0].attn.W_V[1] = basis
        model.blocks[0].attn.W_O[1] = -basis.T  # anti-copying
    scores = copying_scores(model)
    assert scores.shape == (2, 4)
    assert scores[0, 0] > 0.95 and scores[0, 1] < -0.95
    assert scores[0, 2:].abs().max() < 0.8 and scores[1].abs().max() < 0.8
    c = head_circuit(model, 0, 0)
    assert c.copying_score == pytest.approx(float(scores[0, 0]), abs=1e-4)
    # Rank 8 of 32 cannot separate 300 tokens, but far more promote themselves first than at random.
    assert c.self_top1 > 0.2 and head_circuit(model, 0, 2).self_top1 < 0.05


def test_unknown_head_is_a_clear_error():
    with pytest.raises(ValueError, match="L5H0 does not exist"):
        head_circuit(_model(), 5, 0)
