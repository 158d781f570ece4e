"""The edges of an attribution graph: direct effects by batched backward passes through the frozen model.

A target reads the residual stream at one position: a feature at ``ln2`` of its layer (its encoder
column), a logit at ``ln_final`` of the last position (its centred unembedding). Under the freezes
(attention patterns, LayerNorm scales, MLP outputs as constants) the map from sources to a target's
pre-activation is linear, so the gradient of the target at each source's write location, dotted with
what the source writes (a feature's activation × decoder row, an error vector, a token embedding), is
that source's direct effect. One backward pass serves ``batch_size`` targets: each batch row carries
one target's gradient (``torch.autograd.grad(..., is_grads_batched=True)``), as circuit-tracer injects
a batch of gradients into a batch of copies of the forward pass (we vmap over one copy instead, so the
forward pass is computed once, not once per row).

Three exact shortcuts make each backward pass cheaper:

* causal buckets: a target at position p sees positions <= p only, so targets are grouped by position
  and each bucket's forward/backward covers the prompt up to its last position;
* the target's own attention layer is done in closed form: the gradient enters at one query position,
  so it reaches each key position k as ``sum_h pattern_h[p, k] · W_V[h] W_O[h] g`` — H vectors instead
  of a dense (position × d_model) pass through both projections. The result enters autograd at that
  layer's ``hook_resid_pre``;
* the token embeddings' effects through layer 0's attention are contracted with the embeddings' own
  value vectors (autograd stops at layer 0's MLP output, :func:`token_effects`).
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from tinyinterp.attribution.replacement import LinearGraph, ReplacementModel
from tinyinterp.errors import TinyinterpError


class SourceLayout:
    """Where each source writes and what: columns of the adjacency matrix, padded per position so that
    one batched matmul per layer contracts a gradient with every feature's write."""

    def __init__(self, rm: ReplacementModel):
        L, P, d = rm.n_layers, rm.n_pos, rm.d_model
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

    def contract_layer(self, rm: ReplacementModel, layer: int, g: torch.Tensor, out: torch.Tensor) -> None:
        """Add to ``out`` (B, n_sources) the effects of layer ``layer``'s MLP-output sources (features,
        errors) given the gradient ``g`` (B, n, d) at that MLP output."""
        n, P = g.shape[1], rm.n_pos
        start = self.error_offset + layer * P
        out[:, start:start + n] += torch.einsum("bpd,pd->bp", g, rm.errors[layer, :n])
        col = self.columns[layer][:n]
        valid = col >= 0
        if valid.any():
            effects = torch.einsum("bpd,pkd->bpk", g, self.decoders[layer][:n])  # (B, n, k)
            out[:, col[valid]] += effects[:, valid]

    def contract(self, rm: ReplacementModel, lg: LinearGraph, grads: list[torch.Tensor | None], out: torch.Tensor) -> None:
        """Add to ``out`` the effects of the token embeddings (``grads[0]``) and of the MLP outputs of
        layers ``0 .. len(grads) - 2`` (``grads[1 + j]``), each (B, n, d)."""
        n = lg.n_pos
        if grads[0] is not None:
            out[:, self.token_offset:self.token_offset + n] += torch.einsum("bpd,pd->bp", grads[0], lg.embed[0].detach())
        for j, g in enumerate(grads[1:]):
            if g is not None:
                self.contract_layer(rm, j, g, out)


def layernorm_backward(rm: ReplacementModel, name: str, vec: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """(B, d): the gradient at a frozen LayerNorm's input of reading ``vec`` (B, d) from its output at
    positions ``pos`` (B,): centre(w ⊙ vec) / scale."""
    module = rm.model.get_submodule(name)
    scale = rm.frozen[f"{name}.hook_scale"][0, pos, 0]  # (B,)
    g = vec * module.w if module.w is not None else vec
    return (g - g.mean(-1, keepdim=True)) / scale[:, None]


def attention_step(rm: ReplacementModel, layer: int, pos: torch.Tensor, g_mid: torch.Tensor, n: int) -> torch.Tensor:
    """(B, n, d): the gradient at ``blocks.{layer}.hook_resid_pre`` of a gradient ``g_mid`` (B, d) at
    ``hook_resid_mid`` of single positions ``pos`` (B,): the residual's identity plus the frozen
    attention's value path, in closed form."""
    attn = rm.model.blocks[layer].attn
    pattern = rm.frozen[f"blocks.{layer}.attn.hook_pattern"][0][:, pos, :n].transpose(0, 1)  # (B, H, n)
    g_z = torch.einsum("bd,hed->bhe", g_mid, attn.W_O)  # (B, H, d_head)
    u = torch.einsum("bhe,hde->bhd", g_z, attn.W_V)  # (B, H, d): per head, the gradient at ln1's output
    g = torch.einsum("bhk,bhd->bkd", pattern, u)  # (B, n, d)
    ln1 = rm.model.blocks[layer].ln1
    if ln1.w is not None:
        g = g * ln1.w
    g = (g - g.mean(-1, keepdim=True)) / rm.frozen[f"blocks.{layer}.ln1.hook_scale"][0, :n]
    g[torch.arange(len(pos), device=g.device), pos] += g_mid
    return g


def token_effects(rm: ReplacementModel, lg: LinearGraph, g_post0: torch.Tensor, out: torch.Tensor) -> None:
    """Add to ``out`` (B, n) the token embeddings' direct effects given the gradient ``g_post0`` (B, n, d)
    at ``blocks.0.hook_resid_post``: the residual's identity plus layer 0's attention, contracted with
    the embeddings' own value vectors (so no pass through ``W_V`` and ln1 for the whole batch)."""
    n = lg.n_pos
    attn, ln1 = rm.model.blocks[0].attn, rm.model.blocks[0].ln1
    embed = lg.embed[0].detach()  # (n, d)
    x = embed - embed.mean(-1, keepdim=True)  # ln1's linear part on the embedding alone (frozen scale)
    x = x / rm.frozen["blocks.0.ln1.hook_scale"][0, :n]
    if ln1.w is not None:
        x = x * ln1.w
    values = torch.einsum("kd,hde->khe", x, attn.W_V)  # (n, H, d_head): what each embedding adds to the values
    g_z = torch.einsum("bqd,hed->bqhe", g_post0, attn.W_O)  # (B, n, H, d_head)
    pattern = rm.frozen["blocks.0.attn.hook_pattern"][0][:, :n, :n]  # (H, query, key)
    g_v = torch.einsum("hqk,bqhe->bkhe", pattern, g_z)
    out += torch.einsum("bkd,kd->bk", g_post0, embed) + torch.einsum("bkhe,khe->bk", g_v, values)


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


def _backward(output: torch.Tensor, inputs: list[torch.Tensor], grad: torch.Tensor) -> list[torch.Tensor | None]:
    """Gradients (B, n, d) at ``inputs`` of the batch of output gradients ``grad`` (B, n, d): ONE backward pass."""
    if len(grad) == 1:  # a plain backward pass (vmap adds nothing for one row)
        grads = torch.autograd.grad([output], inputs, grad_outputs=[grad], retain_graph=True, allow_unused=True)
        return [None if g is None else g for g in grads]
    grads = torch.autograd.grad([output], inputs, grad_outputs=[grad[:, None]], retain_graph=True, allow_unused=True,
                                is_grads_batched=True)
    return [None if g is None else g[:, 0] for g in grads]


def edge_rows(rm: ReplacementModel, logit_vecs: torch.Tensor, batch_size: int = 256, causal_buckets: bool = True,
              progress: bool = False, only: torch.Tensor | None = None, out: torch.Tensor | None = None,
              out_rows: torch.Tensor | None = None) -> torch.Tensor:
    """(n_active + n_logits, n_sources): every feature's and logit's incoming direct effects.

    Targets are grouped by layer (a backward pass walks only the layers below its targets) and, with
    ``causal_buckets``, by position; each group takes one batched backward pass per ``batch_size``.
    ``only``: a bool mask of the targets to compute (other rows stay zero). ``out`` / ``out_rows``: write
    target ``t``'s row into ``out[out_rows[t], :n_sources]`` (any dtype or device; e.g. the adjacency
    matrix, so the graph is not held twice) and return ``out``."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise TinyinterpError(f"--batch-size must be a positive integer, got {batch_size!r}")
    L, P = rm.n_layers, rm.n_pos
    layout = SourceLayout(rm)
    n_targets = rm.n_active + len(logit_vecs)
    t_layer = torch.cat([rm.active_features[:, 0], torch.full((len(logit_vecs),), L, device=rm.device)])
    t_pos = torch.cat([rm.active_features[:, 1], torch.full((len(logit_vecs),), P - 1, device=rm.device)])
    t_vec = torch.cat([rm.encoder_vecs, logit_vecs.to(rm.encoder_vecs)])
    wanted = torch.ones(n_targets, dtype=torch.bool, device=rm.device) if only is None else only.to(rm.device)
    if out is None:
        out = torch.zeros(n_targets, layout.n_sources, dtype=t_vec.dtype, device=rm.device)
    if out_rows is None:
        out_rows = torch.arange(n_targets)
    bar = tqdm(total=int(wanted.sum()), desc="attribution", disable=not progress, leave=False)
    start = 0
    for end in _buckets(t_pos[wanted], P, batch_size, causal_buckets):
        in_bucket = (t_pos >= start) & (t_pos <= end) & wanted
        start = end + 1
        if not in_bucket.any():
            continue
        n = end + 1
        lg = rm.linear_graph(n)
        with torch.no_grad():  # the closed-form parts use parameters: record nothing (autograd.grad still runs)
            _bucket_rows(rm, lg, layout, in_bucket, t_layer, t_pos, t_vec, batch_size, out, out_rows.cpu(), bar)
        del lg
    bar.close()
    return out


def _bucket_rows(rm: ReplacementModel, lg: LinearGraph, layout: SourceLayout, in_bucket, t_layer, t_pos, t_vec,
                 batch_size: int, out: torch.Tensor, out_rows: torch.Tensor, bar) -> None:
    """The rows of one bucket's targets, layer by layer, ``batch_size`` targets per backward pass."""
    L, n = rm.n_layers, lg.n_pos
    for layer in range(L + 1):
        todo = (in_bucket & (t_layer == layer)).nonzero()[:, 0]
        for chunk in todo.split(batch_size) if len(todo) else ():
            pos = t_pos[chunk]
            block = torch.zeros(len(chunk), layout.n_sources, dtype=t_vec.dtype, device=t_vec.device)
            if layer == L:  # logits read the last residual: the last MLP output directly, then attention L-1
                g_mid = layernorm_backward(rm, "ln_final", t_vec[chunk], pos)
                direct = torch.zeros(len(chunk), n, rm.d_model, dtype=t_vec.dtype, device=t_vec.device)
                direct[:, -1] = g_mid
                layout.contract_layer(rm, L - 1, direct, block)
                attn_layer = L - 1
            else:
                g_mid = layernorm_backward(rm, f"blocks.{layer}.ln2", t_vec[chunk], pos)
                attn_layer = layer
            g_pre = attention_step(rm, attn_layer, pos, g_mid, n)
            if attn_layer == 0:  # the gradient at resid_pre_0 is the token embeddings' gradient
                layout.contract(rm, lg, [g_pre], block)
            else:  # autograd down to layer 0's MLP output; the token embeddings' effects from there in closed form
                grads = _backward(lg.resid_pre[attn_layer], lg.mlp_out[:attn_layer], g_pre)
                layout.contract(rm, lg, [None, *grads], block)
                token_effects(rm, lg, grads[0], block[:, layout.token_offset:layout.token_offset + n])
            out[out_rows[chunk.cpu()], :layout.n_sources] = block.to(device=out.device, dtype=out.dtype)
            bar.update(len(chunk))


def per_target_rows(rm: ReplacementModel, logit_vecs: torch.Tensor, only: torch.Tensor | None = None,
                    progress: bool = False, values_only: bool = True) -> torch.Tensor:
    """The textbook reference for :func:`edge_rows`: ONE plain backward pass per target node through
    the whole frozen model on the whole prompt (autograd through every attention layer, the target's
    own included), injecting the target's read direction where it reads — what circuit-tracer computes
    at batch size 1. Same rows as :func:`edge_rows` (the benchmark's baseline and the tests'
    cross-check); ``only`` as there; ``values_only=False`` also backpropagates through the fused q/k/v
    projection (zero gradient for q and k, 1.5x the work)."""
    L, P = rm.n_layers, rm.n_pos
    layout = SourceLayout(rm)
    n_targets = rm.n_active + len(logit_vecs)
    wanted = torch.ones(n_targets, dtype=torch.bool) if only is None else only.cpu()
    rows = torch.zeros(n_targets, layout.n_sources, dtype=rm.encoder_vecs.dtype, device=rm.device)
    lg = rm.linear_graph(P, values_only=values_only)
    targets = wanted.nonzero()[:, 0].tolist()
    for t in tqdm(targets, desc="attribution (per target)", disable=not progress, leave=False):
        if t < rm.n_active:
            layer, pos = (int(x) for x in rm.active_features[t, :2])
            output, vec = lg.reads[layer], rm.encoder_vecs[t]
        else:
            layer, pos, output, vec = L, P - 1, lg.final, logit_vecs[t - rm.n_active].to(rm.encoder_vecs)
        grad = torch.zeros_like(output)
        grad[0, pos] = vec
        inputs = [lg.embed, *lg.mlp_out[:layer]]
        grads = torch.autograd.grad([output], inputs, grad_outputs=[grad], retain_graph=True, allow_unused=True)
        with torch.no_grad():
            block = torch.zeros(1, layout.n_sources, dtype=rows.dtype, device=rows.device)
            layout.contract(rm, lg, list(grads), block)
        rows[t] = block[0]
    return rows
