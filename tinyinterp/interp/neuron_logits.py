"""Logit effects of MLP neurons: the tokens each neuron's output weight promotes and suppresses directly.

**Approximation (direct path, LayerNorm folded, scale frozen).** A neuron ``n`` of layer ``l`` adds
``a * W_out[l, n]`` to the residual stream. Its *direct* effect on the logits is that vector passed
straight through ``ln_final`` and the unembedding, ignoring every later layer (which may read and
change it). ``ln_final`` is linearised: the centring is kept (subtract the mean over ``d_model``,
exactly as LayerNorm does), the per-token scale ``1 / std(x)`` is ignored (it depends on the whole
residual stream, not on the neuron; it rescales all of a token position's logits alike, so the
ranking of tokens is unchanged), the weight ``ln_final.w`` is multiplied in, and the biases
(``ln_final.b``, ``b_U``) are dropped since they do not depend on the neuron::

    effect[l, n, :] = ((W_out[l, n] - mean(W_out[l, n])) * ln_final.w) @ W_U      # (d_vocab,)

then centred over the vocabulary (softmax ignores a constant shift). Units: logit per unit of
activation, before LayerNorm's scale. RMSNorm models (``cfg.normalization_type`` ``"RMS"``/``"RMSPre"``)
are not centred; models whose LayerNorm weight is already folded into ``W_U`` (TransformerBridge
compatibility mode, ``LNPre``) have no ``ln_final.w`` and use ``W_U`` as is.

:func:`neuron_weights` reads the weights through the TransformerLens names ``model.W_out``
``(n_layers, d_mlp, d_model)`` and ``model.W_U`` ``(d_model, d_vocab)`` when the model has them (TL
bridges, and our model once it gains them), else through our parameter names
(``blocks[l].mlp.fc_out.weight`` ``(d_model, d_mlp)``, ``unembed.weight`` ``(d_vocab, d_model)``).

    >>> eff = logit_effects(model, n_top=10)        # dict of (L, N, 10) tensors
    >>> eff["logit_top_tokens"][3, 17]              # token ids neuron L3 N17 promotes most
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tinyinterp.errors import TinyinterpError

LOGIT_KEYS = ("logit_top_tokens", "logit_top_values", "logit_bottom_tokens", "logit_bottom_values")


@dataclass
class NeuronWeights:
    W_out: torch.Tensor
    """(n_layers, d_mlp, d_model) float32."""
    W_U: torch.Tensor
    """(d_model, d_vocab) float32."""
    ln_w: torch.Tensor | None
    """(d_model,) ln_final weight, or None (folded already, or no final norm)."""
    centre: bool
    """Whether the final norm subtracts the mean (LayerNorm) or not (RMSNorm)."""


def _tensor(x) -> torch.Tensor:
    return x.detach().float()  # stays on the model's device: on a GPU the products below are ~free


def neuron_weights(model) -> NeuronWeights:
    """The MLP output weights, unembedding and final-norm weight of ``model``, TL names first."""
    cfg = model.cfg
    W_out = getattr(model, "W_out", None)
    if W_out is not None:
        W_out = _tensor(W_out)
    else:
        try:
            W_out = torch.stack([_tensor(block.mlp.fc_out.weight).T for block in model.blocks])
        except AttributeError as e:
            raise TinyinterpError(f"model {type(model).__name__} has neither W_out nor blocks[l].mlp.fc_out; "
                                  "cannot compute neuron logit effects") from e
    unembed = unembedding_weights(model, device=W_out.device)
    expected = (cfg.n_layers, cfg.d_mlp, cfg.d_model)
    if tuple(W_out.shape) != expected:
        raise TinyinterpError(f"model weights have shapes W_out {tuple(W_out.shape)}, W_U {tuple(unembed.W_U.shape)}; "
                              f"expected W_out {expected} and W_U ({cfg.d_model}, d_vocab)")
    return NeuronWeights(W_out, unembed.W_U, unembed.ln_w, unembed.centre)


def unembedding_weights(model, device=None) -> NeuronWeights:
    """The unembedding and final-norm weight of ``model`` (``W_out`` left empty): what the direct path of
    any residual-stream direction goes through, TL names first."""
    cfg = model.cfg
    W_U = getattr(model, "W_U", None)
    if W_U is not None:
        W_U = _tensor(W_U)
    elif hasattr(model, "unembed") and hasattr(model.unembed, "weight"):
        W_U = _tensor(model.unembed.weight).T
    else:
        raise TinyinterpError(f"model {type(model).__name__} has neither W_U nor unembed.weight; cannot compute logit effects")
    if W_U.shape[0] != cfg.d_model:
        raise TinyinterpError(f"model weights have shapes W_U {tuple(W_U.shape)}; expected W_U ({cfg.d_model}, d_vocab)")
    ln = getattr(model, "ln_final", None)
    ln_w = getattr(ln, "w", None)
    norm = str(getattr(cfg, "normalization_type", "LN") or "")
    device = W_U.device if device is None else device
    W_U = W_U.to(device)
    ln_w = _tensor(ln_w).to(device) if isinstance(ln_w, torch.Tensor) else None
    return NeuronWeights(torch.empty(0, 0, cfg.d_model, device=device), W_U, ln_w,
                         centre=not norm.startswith("RMS") and norm != "")


@torch.no_grad()
def logit_effects(model, n_top: int = 20, vocab_size: int | None = None, chunk: int = 1024) -> dict[str, torch.Tensor]:
    """Top/bottom ``n_top`` tokens of every neuron's direct logit effect (see the module docstring).

    ``vocab_size`` limits the tokens considered (default: the model's tokenizer's vocabulary, so padding
    rows of a padded unembedding never show up). Neurons are done ``chunk`` at a time, so memory is
    ``chunk x d_vocab`` floats whatever the model. Returns int32 token ids and float32 values, each
    (n_layers, d_mlp, n_top), on the CPU; top sorted descending, bottom ascending (most suppressed first).
    Cost: one (d_mlp x d_model) @ (d_model x d_vocab) product per layer: ~0.2 s for tinystories-1m on one
    CPU core; ~25 TFLOP for GPT-2 XL (minutes on a CPU, seconds on a GPU; small next to indexing it).
    """
    w = neuron_weights(model)
    return direction_logit_effects(model, w.W_out, n_top, vocab_size, chunk, weights=w)


@torch.no_grad()
def direction_logit_effects(model, directions: torch.Tensor, n_top: int = 20, vocab_size: int | None = None,
                            chunk: int = 1024, weights: NeuronWeights | None = None) -> dict[str, torch.Tensor]:
    """:func:`logit_effects` of any residual-stream write directions ``(L, N, d_model)`` (a neuron's
    ``W_out`` row, a dictionary feature's decoder row): the same direct path, ``ln_final`` folded the
    same way. Returns the same dict of (L, N, n_top) tensors."""
    w = weights or unembedding_weights(model)
    directions = directions.detach().float().to(w.W_U.device)
    if directions.ndim != 3 or directions.shape[-1] != w.W_U.shape[0]:
        raise TinyinterpError(f"output directions have shape {tuple(directions.shape)}; expected "
                              f"(layers, units, d_model={w.W_U.shape[0]})")
    tok = getattr(model, "tokenizer", None)
    V = w.W_U.shape[1]
    if vocab_size is None and tok is not None:
        vocab_size = getattr(tok, "vocab_size", None)
    W_U = w.W_U[:, : min(V, vocab_size or V)]
    m = min(n_top, W_U.shape[1])
    L, N, _ = directions.shape
    out = {"logit_top_tokens": torch.empty(L, N, m, dtype=torch.int32), "logit_top_values": torch.empty(L, N, m),
           "logit_bottom_tokens": torch.empty(L, N, m, dtype=torch.int32), "logit_bottom_values": torch.empty(L, N, m)}
    for layer in range(L):
        for lo in range(0, N, chunk):
            direction = directions[layer, lo : lo + chunk]  # (c, d_model)
            if w.centre:
                direction = direction - direction.mean(-1, keepdim=True)
            if w.ln_w is not None:
                direction = direction * w.ln_w
            effect = direction @ W_U  # (c, d_vocab)
            effect -= effect.mean(-1, keepdim=True)
            for key, largest in (("logit_top", True), ("logit_bottom", False)):
                vals, ids = torch.topk(effect, m, dim=-1, largest=largest)
                out[f"{key}_values"][layer, lo : lo + chunk] = vals.cpu()
                out[f"{key}_tokens"][layer, lo : lo + chunk] = ids.int().cpu()
    return out
