"""Attribute one next-token prediction: the direct-effect graph of the local replacement model.

Algorithm (Ameisen et al. 2025; circuit-tracer's ``attribute``):

1. The clean pass (:class:`~tinyinterp.attribution.replacement.ReplacementModel`) finds the active
   transcoder features, the error vectors and the logits.
2. Logit nodes: the most likely next tokens until their probabilities add up to
   ``desired_logit_prob`` (at most ``max_n_logits``), or the one ``target`` token. A logit is centred:
   its unembedding column minus the vocabulary mean, as circuit-tracer does.
3. The frozen linear model runs forward once per bucket of positions (batch 1, autograd on), and each
   batch of targets — up to ``batch_size`` features of one layer, or logits — takes ONE backward pass:
   each target's read direction (a feature's encoder column at its (layer, pos), a logit's centred
   unembedding at the last position) is injected as the output gradient of its own batch row
   (``torch.autograd.grad(..., is_grads_batched=True)``). The gradient reaching each source's
   write location, dotted with what the source writes (a feature's activation × decoder row, an error
   vector, a token embedding), is the edge weight: the model is linear under the freezes, so this
   contraction is exactly the source's direct effect on the target.
4. Causality: a target at position p sees positions ≤ p only, so with ``causal_buckets`` a bucket's
   forward and backward passes cover only the prompt up to the bucket's last position.

Constant terms (positional embeddings, biases, transcoders' ``b_dec``/``b_enc``, an excluded BOS
position) are the graph's ``node_biases``: one more forward pass of the linear model with every source
set to zero.
"""

from __future__ import annotations

import copy
import logging

import torch
from tqdm.auto import tqdm

from tinyinterp.attribution.graph import AttributionGraph
from tinyinterp.attribution.replacement import LinearGraph, ReplacementModel
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


def target_token(model, target: str) -> int:
    """The vocabulary id of ``target``, which must be exactly one token (e.g. ``" Lily"``)."""
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise TinyinterpError("--target needs a model with a tokenizer")
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


class _SourceLayout:
    """Where each source writes and what: columns of the adjacency matrix, padded per position so that
    one batched matmul per layer contracts a gradient with every feature's write."""

    def __init__(self, rm: ReplacementModel):
        L, P, d = rm.n_layers, rm.n_pos, rm.d_model
        self.n_active = rm.n_active
        self.error_offset = rm.n_active
        self.token_offset = rm.n_active + L * P
        self.n_sources = self.token_offset + P
        layer, pos = rm.active_features[:, 0], rm.active_features[:, 1]
        writes = rm.activation_values[:, None] * rm.decoder_vecs  # (n, d): what each feature adds
        self.decoders, self.columns = [], []
        for l in range(L):
            idx = (layer == l).nonzero()[:, 0]
            p = pos[idx]
            counts = torch.bincount(p, minlength=P)
            k = max(int(counts.max()) if len(p) else 0, 1)
            starts = torch.cumsum(counts, 0) - counts
            rank = torch.arange(len(p), device=p.device) - starts[p]  # features are sorted by position
            dec = torch.zeros(P, k, d, dtype=writes.dtype, device=writes.device)
            col = torch.full((P, k), -1, dtype=torch.long, device=writes.device)
            dec[p, rank] = writes[idx]
            col[p, rank] = idx
            self.decoders.append(dec)
            self.columns.append(col)

    def contract(self, rm: ReplacementModel, lg: LinearGraph, grads: list[torch.Tensor | None], n_layers_below: int,
                 out: torch.Tensor) -> None:
        """Write into ``out`` (B, n_sources) the direct effects given the gradients (B, n, d) at the
        embedding (``grads[0]``) and at the MLP outputs of the layers below the targets."""
        n, P = lg.n_pos, rm.n_pos
        g = grads[0]
        if g is not None:
            out[:, self.token_offset:self.token_offset + n] = torch.einsum("bpd,pd->bp", g, lg.embed[0].detach())
        for j in range(n_layers_below):
            g = grads[1 + j]
            if g is None:
                continue
            start = self.error_offset + j * P
            out[:, start:start + n] = torch.einsum("bpd,pd->bp", g, rm.errors[j, :n])
            col = self.columns[j][:n]
            valid = col >= 0
            if valid.any():
                effects = torch.einsum("bpd,pkd->bpk", g, self.decoders[j][:n])  # (B, n, k)
                out[:, col[valid]] = effects[:, valid]


def _buckets(positions: torch.Tensor, n_pos: int, batch_size: int, causal: bool) -> list[int]:
    """Last position (inclusive) of each bucket of target positions; one bucket when not causal."""
    if not causal:
        return [n_pos - 1]
    counts = torch.bincount(positions, minlength=n_pos).tolist()
    ends, acc = [], 0
    for p, c in enumerate(counts):
        acc += c
        if acc >= batch_size and p < n_pos - 1:
            ends.append(p)
            acc = 0
    return ends + [n_pos - 1]


def edge_rows(rm: ReplacementModel, logit_vecs: torch.Tensor, batch_size: int = 256, causal_buckets: bool = True,
              progress: bool = False) -> torch.Tensor:
    """(n_active + n_logits, n_sources): every feature's and logit's incoming direct effects.

    Targets are grouped by layer (a backward pass walks only the layers below its targets) and, with
    ``causal_buckets``, by position; each group takes one batched backward pass per ``batch_size``."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise TinyinterpError(f"--batch-size must be a positive integer, got {batch_size!r}")
    L, P = rm.n_layers, rm.n_pos
    layout = _SourceLayout(rm)
    n_targets = rm.n_active + len(logit_vecs)
    t_layer = torch.cat([rm.active_features[:, 0], torch.full((len(logit_vecs),), L, device=rm.device)])
    t_pos = torch.cat([rm.active_features[:, 1], torch.full((len(logit_vecs),), P - 1, device=rm.device)])
    t_vec = torch.cat([rm.encoder_vecs, logit_vecs.to(rm.encoder_vecs)])
    rows = torch.zeros(n_targets, layout.n_sources, dtype=t_vec.dtype, device=rm.device)
    ends = _buckets(t_pos, P, batch_size, causal_buckets)
    bar = tqdm(total=n_targets, desc="attribution", disable=not progress, leave=False)
    start = 0
    for end in ends:
        in_bucket = (t_pos >= start) & (t_pos <= end)
        start = end + 1
        if not in_bucket.any():
            continue
        lg = rm.linear_graph(end + 1)
        for layer in range(L + 1):
            todo = (in_bucket & (t_layer == layer)).nonzero()[:, 0]
            if len(todo) == 0:
                continue
            output = lg.final if layer == L else lg.reads[layer]
            inputs = [lg.embed, *lg.mlp_out[:layer]]
            for chunk in todo.split(batch_size):
                B = len(chunk)
                grad_out = torch.zeros(B, *output.shape, dtype=output.dtype, device=output.device)
                grad_out[torch.arange(B), 0, t_pos[chunk]] = t_vec[chunk].to(output.dtype)
                if B == 1:  # a plain backward pass (vmap adds nothing for one row)
                    grads = torch.autograd.grad([output], inputs, grad_outputs=[grad_out[0]], retain_graph=True,
                                                allow_unused=True)
                    grads = [None if g is None else g[None, 0] for g in grads]
                else:
                    grads = torch.autograd.grad([output], inputs, grad_outputs=[grad_out], retain_graph=True,
                                                allow_unused=True, is_grads_batched=True)
                    grads = [None if g is None else g[:, 0] for g in grads]
                block = torch.zeros(B, layout.n_sources, dtype=rows.dtype, device=rows.device)
                layout.contract(rm, lg, grads, layer, block)
                rows[chunk] = block
                bar.update(B)
        del lg
    bar.close()
    return rows


def attribute(model, transcoders: TranscoderSet, prompt, *, max_n_logits: int = 10, desired_logit_prob: float = 0.95,
              target: str | None = None, batch_size: int = 256, dtype: torch.dtype | None = None,
              exclude_bos: bool = True, causal_buckets: bool = True, progress: bool = False) -> AttributionGraph:
    """The attribution graph of ``model``'s next-token prediction after ``prompt`` (text or token ids).

    Args:
        transcoders: one per layer (:func:`~tinyinterp.attribution.transcoders.load_transcoder_set`).
        max_n_logits, desired_logit_prob: which next tokens become logit nodes (ignored with ``target``).
        target: one token (e.g. ``" Lily"``) to attribute instead of the most likely ones.
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

    rows = edge_rows(rm, logit_vecs, batch_size=batch_size, causal_buckets=causal_buckets, progress=progress)

    n_act, L, P, n_logits = rm.n_active, rm.n_layers, rm.n_pos, len(ids)
    n_nodes = n_act + L * P + P + n_logits
    out_dtype = torch.float64 if param.dtype == torch.float64 else torch.float32
    adjacency = torch.zeros(n_nodes, n_nodes, dtype=out_dtype)
    adjacency[:n_act, :rows.shape[1]] = rows[:n_act].cpu().to(out_dtype)
    adjacency[n_nodes - n_logits:, :rows.shape[1]] = rows[n_act:].cpu().to(out_dtype)

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
