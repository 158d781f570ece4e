"""The sparse training step (sparse_ops) computes exactly what dense autograd through ``topk`` computes."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyinterp.dictionaries.config import DictionaryConfig
from tinyinterp.dictionaries.sparse_coder import SparseCoder
from tinyinterp.dictionaries.sparse_ops import embedding_decode, topk_encode


def _coder(kind: str, d_in: int, d_out: int, d_sae: int, k: int, seed: int) -> SparseCoder:
    hook_out = "h" if kind == "sae" else "o"
    coder = SparseCoder(DictionaryConfig(kind, "h", hook_out, d_in, d_out, d_sae, k)).double()
    coder.reset_parameters(torch.Generator().manual_seed(seed))
    with torch.no_grad():  # non-zero biases, so the centre and bias gradients are exercised
        coder.b_enc.normal_(0, 0.1, generator=torch.Generator().manual_seed(seed + 1))
        coder.b_dec.normal_(0, 0.3, generator=torch.Generator().manual_seed(seed + 2))
    return coder


def _dense_loss(coder, x, y, dead, k_aux):
    """The reference: the TopK loss written with dense tensors and autograd through topk."""
    pre = coder.pre_activations(x)
    values, indices = pre.topk(coder.cfg.k, dim=-1)
    recon = torch.zeros_like(pre).scatter(-1, indices, values) @ coder.W_dec + coder.b_dec
    err = y - recon
    loss = err.pow(2).sum()
    if dead.any():
        dead_pre = torch.where(dead[None], pre, torch.zeros_like(pre))
        aux_values, aux_indices = dead_pre.topk(min(k_aux, int(dead.sum())), dim=-1)
        err_hat = torch.zeros_like(pre).scatter(-1, aux_indices, aux_values) @ coder.W_dec
        loss = loss + (err_hat - err.detach()).pow(2).sum()
    return loss


def _sparse_loss(coder, x, y, dead, k_aux):
    values, indices, aux_values, aux_indices = topk_encode(coder, x, coder.cfg.k, dead.nonzero().squeeze(1), k_aux)
    err = y - (embedding_decode(coder.W_dec, values, indices) + coder.b_dec)
    loss = err.pow(2).sum()
    if dead.any():
        loss = loss + (embedding_decode(coder.W_dec, aux_values, aux_indices) - err.detach()).pow(2).sum()
    return loss


@settings(max_examples=25, deadline=None)
@given(kind=st.sampled_from(["sae", "transcoder"]), d_in=st.integers(2, 12), d_sae=st.integers(4, 40),
       k_frac=st.floats(0.05, 1.0), n=st.integers(1, 30), dead_frac=st.floats(0.0, 1.0), k_aux=st.integers(1, 8),
       seed=st.integers(0, 10_000))
def test_sparse_step_gradients_equal_dense_autograd(kind, d_in, d_sae, k_frac, n, dead_frac, k_aux, seed):
    d_out = d_in if kind == "sae" else d_in + 3
    k = max(1, min(d_sae, round(k_frac * d_sae)))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d_in, generator=g, dtype=torch.float64)
    y = x if kind == "sae" else torch.randn(n, d_out, generator=g, dtype=torch.float64)
    dead = torch.rand(d_sae, generator=g) < dead_frac
    grads = []
    for loss_fn in (_dense_loss, _sparse_loss):
        coder = _coder(kind, d_in, d_out, d_sae, k, seed)
        loss = loss_fn(coder, x, y, dead, k_aux)
        loss.backward()
        grads.append((float(loss.detach()), {name: p.grad.clone() for name, p in coder.named_parameters()}))
    (dense_loss, dense), (sparse_loss, sparse) = grads
    assert abs(dense_loss - sparse_loss) <= 1e-9 * max(1.0, abs(dense_loss))
    for name in dense:
        torch.testing.assert_close(sparse[name], dense[name], rtol=1e-9, atol=1e-9, msg=name)


def test_embedding_decode_keeps_leading_dimensions():
    W = torch.randn(10, 3)
    values, indices = torch.rand(2, 4, 5), torch.randint(0, 10, (2, 4, 5))
    expected = (values.unsqueeze(-1) * W[indices]).sum(-2)
    torch.testing.assert_close(embedding_decode(W, values, indices), expected)
