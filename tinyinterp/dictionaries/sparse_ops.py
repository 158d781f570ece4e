"""The sparse training step of a TopK dictionary: encode with a sparse backward, decode as an embedding bag.

Autograd through ``pre.topk`` would scatter the gradient of the k chosen values back into a dense
``(tokens, d_sae)`` matrix and multiply it densely with the input — as expensive as the forward
matmul, for a gradient with only ``k`` non-zeros per token. :class:`TopKEncode` keeps the gradient
sparse instead: the encoder-weight gradient is, for each feature, the gradient-weighted sum of the
tokens that chose it, which is one ``embedding_bag`` over the (feature-sorted) choices; the bias and
centre gradients come from the per-feature sum of the gradient. The AuxK choices (the largest
pre-activations among dead features) go through the same function, so the auxiliary loss trains the
dead features' encoder rows as well as their decoder rows.

Decoding ``values @ W_dec[indices]`` is ``F.embedding_bag(indices, W_dec, per_sample_weights=values)``:
no ``(tokens, k, d_out)`` gather is built, and its backward is sparse in ``W_dec``'s rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _feature_sums(tokens: torch.Tensor, features: torch.Tensor, weights: torch.Tensor, x: torch.Tensor,
                  n_features: int) -> torch.Tensor:
    """(n_features, d): row f = sum of weights[i] * x[tokens[i]] over the choices i with features[i] == f."""
    order = features.argsort(stable=True)
    counts = torch.bincount(features, minlength=n_features)
    offsets = torch.zeros(n_features, dtype=torch.long, device=x.device)
    offsets[1:] = counts.cumsum(0)[:-1]
    return F.embedding_bag(tokens[order], x, offsets, per_sample_weights=weights[order], mode="sum")


class TopKEncode(torch.autograd.Function):
    """``relu((x - centre) @ W_enc + b_enc)`` → its top ``k`` per row, and the top ``k_aux`` of ``aux_columns``.

    Returns ``(values, indices, aux_values, aux_indices)``; the aux pair is empty (``(n, 0)``) when
    ``aux_columns`` is empty. Gradients flow to ``centre``, ``W_enc`` and ``b_enc`` (``x`` is data).
    """

    @staticmethod
    def forward(ctx, x, centre, W_enc, b_enc, k: int, aux_columns: torch.Tensor, k_aux: int):
        xc = x - centre if centre is not None else x
        pre = torch.relu(torch.addmm(b_enc, xc, W_enc))
        values, indices = pre.topk(k, dim=-1, sorted=False)
        if len(aux_columns) and k_aux > 0:
            aux_pre = pre.index_select(1, aux_columns)
            aux_values, local = aux_pre.topk(min(k_aux, len(aux_columns)), dim=-1, sorted=False)
            aux_indices = aux_columns[local]
        else:
            aux_values = pre.new_zeros(len(pre), 0)
            aux_indices = indices.new_zeros(len(pre), 0)
        ctx.save_for_backward(xc, W_enc, indices, values > 0, aux_indices, aux_values > 0)
        ctx.has_centre = centre is not None
        ctx.mark_non_differentiable(indices, aux_indices)
        return values, indices, aux_values, aux_indices

    @staticmethod
    def backward(ctx, g_values, _g_indices, g_aux, _g_aux_indices):
        xc, W_enc, indices, alive, aux_indices, aux_alive = ctx.saved_tensors
        n = len(xc)
        grads = [g_values * alive]  # relu: no gradient where the chosen value is 0
        chosen = [indices]
        if aux_indices.shape[1]:
            grads.append(g_aux * aux_alive)
            chosen.append(aux_indices)
        g = torch.cat(grads, 1) if len(grads) > 1 else grads[0]
        features = (torch.cat(chosen, 1) if len(chosen) > 1 else chosen[0]).reshape(-1)
        tokens = torch.arange(n, device=xc.device).repeat_interleave(g.shape[1])
        g = g.reshape(-1).to(xc.dtype)
        d_sae = W_enc.shape[1]
        grad_W = grad_b = grad_centre = None
        if ctx.needs_input_grad[2]:
            grad_W = _feature_sums(tokens, features, g, xc, d_sae).t().contiguous()
        g_sum = torch.zeros(d_sae, dtype=xc.dtype, device=xc.device).index_add_(0, features, g)
        if ctx.needs_input_grad[3]:
            grad_b = g_sum
        if ctx.has_centre and ctx.needs_input_grad[1]:
            grad_centre = -(W_enc @ g_sum)
        return None, grad_centre, grad_W, grad_b, None, None, None


def topk_encode(coder, x: torch.Tensor, k: int, aux_columns: torch.Tensor | None = None, k_aux: int = 0):
    """The training-time encoder of ``coder`` (a :class:`SparseCoder`): see :class:`TopKEncode`."""
    aux_columns = torch.zeros(0, dtype=torch.long) if aux_columns is None else aux_columns
    aux_columns = aux_columns.to(x.device)  # feature ages live on the CPU
    centre = coder.b_dec if coder.applies_b_dec_to_input else None
    return TopKEncode.apply(x, centre, coder.W_enc, coder.b_enc, k, aux_columns, k_aux)


def embedding_decode(W_dec: torch.Tensor, values: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """``sum_j values[..., j] * W_dec[indices[..., j]]`` without building the gathered rows."""
    lead = indices.shape[:-1]
    flat_idx = indices.reshape(-1, indices.shape[-1])
    if flat_idx.shape[1] == 0:
        return W_dec.new_zeros(*lead, W_dec.shape[1])
    out = F.embedding_bag(flat_idx, W_dec, per_sample_weights=values.reshape(flat_idx.shape).to(W_dec.dtype),
                          mode="sum")
    return out.reshape(*lead, W_dec.shape[1])
