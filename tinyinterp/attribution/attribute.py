"""Attribute one next-token prediction: the direct-effect graph of the local replacement model.

Algorithm (Ameisen et al. 2025; circuit-tracer's ``attribute``):

1. The clean pass (:class:`~tinyinterp.attribution.replacement.ReplacementModel`) finds the active
   transcoder features, the error vectors and the logits.
2. Logit nodes: the most likely next tokens until their probabilities add up to
   ``desired_logit_prob`` (at most ``max_n_logits``), or the one ``target`` token. A logit is centred:
   its unembedding column minus the vocabulary mean, as circuit-tracer does.
3. Edges (:mod:`tinyinterp.attribution.edges`): batched backward passes through the frozen linear
   model, one per ``batch_size`` targets of a layer, each target's read direction injected as the
   output gradient of its own batch row; the gradient at each source's write location, dotted with
   what the source writes, is the edge weight.

Constant terms (positional embeddings, biases, transcoders' ``b_dec``/``b_enc``, an excluded BOS
position) are the graph's ``node_biases``: one more forward pass of the linear model with every source
set to zero.
"""

from __future__ import annotations

import copy
import logging

import torch

from tinyinterp.attribution.edges import edge_rows
from tinyinterp.attribution.graph import AttributionGraph
from tinyinterp.attribution.replacement import ReplacementModel
from tinyinterp.attribution.transcoders import TranscoderSet
from tinyinterp.errors import TinyinterpError

log = logging.getLogger(__name__)


def prompt_tokens(model, prompt) -> torch.Tensor:
    """(n_pos,) token ids of ``prompt``: text (BOS prepended, as ``model.to_tokens``) or token ids."""
    if isinstance(prompt, str):
        if getattr(model, "tokenizer", None) is None:
            raise TinyinterpError("attribute: the model has no tokenizer; pass token ids instead of text")
        return model.to_tokens(prompt, truncate=False)[0]
    tokens = torch.as_tensor(prompt, dtype=torch.long)
    if tokens.dim() == 2 and tokens.shape[0] == 1:
        tokens = tokens[0]
    if tokens.dim() != 1:
        raise TinyinterpError(f"attribute: prompt tokens must be one sequence (pos,) or (1, pos), got {tuple(tokens.shape)}")
    return tokens


def target_token(model, target: str | int) -> int:
    """The vocabulary id of ``target``: a string that must be exactly one token (e.g. ``" Lily"``), or an id."""
    if isinstance(target, int) and not isinstance(target, bool):
        if not 0 <= target < model.cfg.d_vocab:
            raise TinyinterpError(f"--target token id {target} is outside the vocabulary (0..{model.cfg.d_vocab - 1})")
        return target
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise TinyinterpError("--target as text needs a model with a tokenizer; pass a token id")
    ids = tokenizer.encode(target)
    if len(ids) != 1:
        pieces = [tokenizer.decode([i]) for i in ids]
        raise TinyinterpError(f"--target {target!r} is {len(ids)} tokens {pieces}, not one; "
                              "give a single token (mind the leading space, e.g. ' Lily')")
    return ids[0]


def select_logits(last_logits: torch.Tensor, max_n_logits: int, desired_logit_prob: float,
                  target: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(token ids, probabilities): the most likely tokens up to ``desired_logit_prob`` cumulative
    probability, at most ``max_n_logits``; or just ``target``."""
    if isinstance(max_n_logits, bool) or not isinstance(max_n_logits, int) or max_n_logits < 1:
        raise TinyinterpError(f"--max-n-logits must be a positive integer, got {max_n_logits!r}")
    if not 0 < desired_logit_prob <= 1:
        raise TinyinterpError(f"--desired-logit-prob must be in (0, 1], got {desired_logit_prob!r}")
    probs = torch.softmax(last_logits.double(), dim=-1)
    if target is not None:
        ids = torch.tensor([target], device=last_logits.device)
        return ids, probs[ids].to(last_logits.dtype)
    top = probs.sort(descending=True)
    n = int(torch.searchsorted(top.values.cumsum(0), torch.tensor(desired_logit_prob, dtype=probs.dtype))) + 1
    n = min(n, max_n_logits, len(probs))
    return top.indices[:n], top.values[:n].to(last_logits.dtype)


def attribute(model, transcoders: TranscoderSet, prompt, *, max_n_logits: int = 10, desired_logit_prob: float = 0.95,
              target: str | int | None = None, batch_size: int = 256, dtype: torch.dtype | None = None,
              exclude_bos: bool = True, causal_buckets: bool = True, progress: bool = False) -> AttributionGraph:
    """The attribution graph of ``model``'s next-token prediction after ``prompt`` (text or token ids).

    Args:
        transcoders: one per layer (:func:`~tinyinterp.attribution.transcoders.load_transcoder_set`).
        max_n_logits, desired_logit_prob: which next tokens become logit nodes (ignored with ``target``).
        target: one token (text such as ``" Lily"``, or its id) to attribute instead of the most likely ones.
        batch_size: targets per backward pass (memory grows with it: batch × prompt × d_model per layer).
        dtype: run in this dtype (``torch.float64`` for exactness checks) on a copy of model and transcoders.
        exclude_bos: a leading ``<|endoftext|>`` position has no feature or error nodes (its MLP outputs are constants).
        causal_buckets: backpropagate through the prompt prefix each target can see only.

    Returns:
        An :class:`AttributionGraph` with every active feature as a node (unpruned).
    """
    tokens = prompt_tokens(model, prompt)
    target_id = target_token(model, target) if target is not None else None
    if dtype is not None and dtype != next(model.parameters()).dtype:
        model = copy.deepcopy(model).to(dtype)
    param = next(model.parameters())
    if transcoders[0].W_enc.dtype != param.dtype or transcoders[0].W_enc.device != param.device:
        transcoders = transcoders.to(param.dtype, param.device)
    rm = ReplacementModel(model, transcoders, tokens.to(param.device), exclude_bos=exclude_bos)
    last = rm.logits[-1]
    ids, probs = select_logits(last, max_n_logits, desired_logit_prob, target_id)
    W_U = model.W_U  # (d_model, d_vocab)
    logit_vecs = (W_U[:, ids] - W_U.mean(dim=1, keepdim=True)).T.detach()  # centred unembedding (n_logits, d)
    log.info("attribution of %d tokens: %d active features, %d logit nodes", rm.n_pos, rm.n_active, len(ids))

    n_act, L, P, n_logits = rm.n_active, rm.n_layers, rm.n_pos, len(ids)
    n_nodes = n_act + L * P + P + n_logits
    out_dtype = torch.float64 if param.dtype == torch.float64 else torch.float32
    adjacency = torch.zeros(n_nodes, n_nodes, dtype=out_dtype)
    target_rows = torch.cat([torch.arange(n_act), torch.arange(n_nodes - n_logits, n_nodes)])  # features, then logits
    edge_rows(rm, logit_vecs, batch_size=batch_size, causal_buckets=causal_buckets, progress=progress,
              out=adjacency, out_rows=target_rows)

    # Constant terms: the linear model with every source switched off; values: the clean pass.
    zero_logits, zero_pre = rm.frozen_forward(torch.zeros_like(rm.activation_values), error_scale=0.0, token_scale=0.0)
    biases = torch.zeros(n_nodes, dtype=out_dtype)
    biases[:n_act] = zero_pre.cpu().to(out_dtype)
    biases[n_nodes - n_logits:] = (zero_logits[-1, ids] - zero_logits[-1].mean()).cpu().to(out_dtype)
    values = torch.zeros(n_nodes, dtype=out_dtype)
    layer, pos = rm.active_features[:, 0], rm.active_features[:, 1]
    values[:n_act] = ((rm.mlp_in[layer, pos] * rm.encoder_vecs).sum(-1) + rm.encoder_biases).cpu().to(out_dtype)
    values[n_act:n_act + L * P] = rm.errors.norm(dim=-1).reshape(-1).cpu().to(out_dtype)
    values[n_act + L * P:n_act + L * P + P] = model.W_E[rm.tokens].norm(dim=-1).detach().cpu().to(out_dtype)
    values[n_nodes - n_logits:] = (last[ids] - last.mean()).cpu().to(out_dtype)

    tokenizer = getattr(model, "tokenizer", None)
    if isinstance(prompt, str):
        text = prompt
    else:
        text = tokenizer.decode(tokens.tolist()) if tokenizer is not None else ""
    return AttributionGraph(
        input_string=text,
        input_tokens=tokens.cpu(),
        active_features=rm.active_features.cpu(),
        activation_values=rm.activation_values.detach().cpu(),
        selected_features=torch.arange(n_act),
        adjacency_matrix=adjacency,
        logit_tokens=ids.cpu(),
        logit_probabilities=probs.detach().cpu(),
        n_layers=L,
        model_name=getattr(model, "name", None) or getattr(model.cfg, "preset", None) or "",
        scan=transcoders.scan,
        node_biases=biases,
        node_values=values,
        logit_strings=[tokenizer.token_str(int(i)) for i in ids] if tokenizer is not None else None,
    )
