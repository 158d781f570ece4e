"""The edges of an attribution graph: direct effects by batched backward passes through the frozen model.

A target reads the residual stream at one position: a feature at ``ln2`` of its layer (its encoder
column), a logit at ``ln_final`` of the last position (its centred unembedding). Under the freezes
(attention patterns, LayerNorm scales, MLP outputs as constants) the map from sources to a target's
pre-activation is linear, so the gradient of the target at each source's write location, dotted with
what the source writes (a feature's activation × decoder row, an error vector, a token embedding), is
that source's direct effect. The map being linear, its backward pass is a chain of matrix products,
written out by hand (:class:`FrozenBackward`, no autograd): a batch of ``batch_size`` targets' gradients
(B, positions, d_model) goes down one attention layer in two (B·positions × d) @ (d × d) products with
``W_O`` and ``W_V`` flattened over heads and one per-head pattern mix — what autograd does for one target
(:func:`per_target_rows`, the reference), for B at once, with no forward pass to record.

Exact shortcuts make each target cheaper:

* causal buckets: a target at position p sees positions <= p only, so targets are grouped by position
  and each bucket's backward covers the prompt up to its last position;
* the target's own attention layer in closed form: the gradient enters at one query position, so it
  reaches each key position k as ``g δ_pk + sum_h pattern_h[p, k] / scale_k · c(W_V[h] W_O[h] g)`` —
  H + 1 vectors, not a (position × d_model) pass (:func:`attention_step`);
* the next attention step starts from those H + 1 vectors: their ``W_O`` images come from per-head
  maps folded once per graph (``W_O`` below ∘ ln1 ∘ ``W_V[h]``, :meth:`FrozenBackward.folded`), d² per
  target instead of positions × d²;
* the last attention step (layer 1, towards layer 0's sources) stops at the value gradients: the
  sources' writes are mapped into value space once per graph (:meth:`FrozenBackward.head_space_writes`),
  so no ``W_V`` pass per target; a gradient straight from a closed form at layer 3 does its last two
  steps (layers 2 and 1) that way, with layer 2's value gradients folded into layer 1's head outputs
  (:meth:`FrozenBackward.last_two_steps`): one (B·positions × d) @ (d × d) product instead of two;
* token nodes in forward mode: a prompt has only n_pos of them, so each embedding is pushed up through
  the frozen attention layers once and every target reads its token edges off at its own position
  (:func:`token_edges`), instead of a pass through layer 0's attention per target.
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


def attention_step(rm: ReplacementModel, layer: int, pos: torch.Tensor, g_mid: torch.Tensor, n: int):
    """The gradient at ``blocks.{layer}.hook_resid_pre`` of a gradient ``g_mid`` (B, d) at
    ``hook_resid_mid`` of single positions ``pos`` (B,): the residual's identity plus the frozen
    attention's value path, in closed form. Returns ``(g (B, n, d), factors)``: ``g`` is
    ``coef @ basis``, the basis being ``g_mid`` and one vector per head (its value-path image of ``g_mid``),
    weighted per position by the head's pattern over the ln1 scale; ``factors = (layer, g_mid, g_z (B, H, d_head)
    the heads' output gradients, coef (B, n, H + 1))`` let the next attention step skip the positions
    (:meth:`FrozenBackward.value_grads`)."""
    attn = rm.model.blocks[layer].attn
    pattern = rm.frozen[f"blocks.{layer}.attn.hook_pattern"][0][:, pos, :n].transpose(0, 1)  # (B, H, n)
    g_z = torch.einsum("bd,hed->bhe", g_mid, attn.W_O)  # (B, H, d_head)
    u = torch.einsum("bhe,hde->bhd", g_z, attn.W_V)  # (B, H, d): per head, the gradient at ln1's output
    ln1 = rm.model.blocks[layer].ln1
    if ln1.w is not None:
        u = u * ln1.w
    u = u - u.mean(-1, keepdim=True)
    coef = pattern.transpose(1, 2) / rm.frozen[f"blocks.{layer}.ln1.hook_scale"][0, :n]  # (B, n, H)
    B = len(pos)
    own = torch.zeros(B, n, 1, dtype=u.dtype, device=u.device)
    own[torch.arange(B, device=u.device), pos] = 1
    coef = torch.cat([own, coef], 2)
    return torch.bmm(coef, torch.cat([g_mid[:, None], u], 1)), (layer, g_mid, g_z, coef)


def token_edges(fb: FrozenBackward, t_layer: torch.Tensor, t_pos: torch.Tensor, t_grad: torch.Tensor,
                chunk: int = 16) -> torch.Tensor:
    """(n_targets, n_pos): every target's edges from the token embeddings, in forward mode: the prompt
    has only n_pos token nodes, so each embedding (alone at its position) is pushed up through the
    frozen attention layers once, ``chunk`` tokens at a time over the positions they can reach, and
    each target reads its residual with its gradient ``t_grad`` (n_targets, d) at its LayerNorm input
    (``t_layer`` == n_layers: the logits, after the last MLP, whose token part is zero)."""
    rm = fb.rm
    P, d = rm.n_pos, rm.d_model
    out = torch.zeros(len(t_layer), P, dtype=t_grad.dtype, device=t_grad.device)
    for first in range(0, P, chunk):
        k = torch.arange(first, min(first + chunk, P), device=t_grad.device)
        x = torch.zeros(len(k), P - first, d, dtype=t_grad.dtype, device=t_grad.device)
        x[torch.arange(len(k)), k - first] = fb.embed[k]
        for layer in range(rm.n_layers):
            x = fb.attention_forward(layer, x, first)  # resid_mid = resid_post (the MLP outputs are sources)
            reads = ((t_layer == layer) | ((t_layer == rm.n_layers) & (layer == rm.n_layers - 1))) & (t_pos >= first)
            idx = reads.nonzero()[:, 0]
            at = t_pos[idx] - first
            for p in at.unique().tolist():  # one small matmul per position (a gather of x per target is slower)
                here = idx[at == p]
                out[here, first:first + len(k)] = t_grad[here] @ x[:, p].T
    return out


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


class FrozenBackward:
    """The frozen model's backward map, written out: per layer the value path of attention as two
    matrices (``W_O`` flattened over heads, ``W_V`` flattened and transposed), its pattern and ``ln1``,
    computed once per graph. A batch of gradients (B, n, d) at ``resid_pre`` of layer ``l + 1`` goes to
    ``resid_pre`` of layer ``l`` in two (B·n × d) @ (d × d) matrix products and one per-head pattern
    mix — the same arithmetic autograd does for one target, for B targets at once and without a forward
    pass to record (the MLP outputs are sources, so the MLPs take no part)."""

    def __init__(self, rm: ReplacementModel):
        self.rm = rm
        self.W_O, self.W_V, self.patterns, self.ln1_w, self.ln1_scale, self.n_heads = [], [], [], [], [], []
        for l in range(rm.n_layers):
            attn, ln1 = rm.model.blocks[l].attn, rm.model.blocks[l].ln1
            H, d_head, d = attn.W_O.shape
            self.W_O.append(attn.W_O.detach().reshape(H * d_head, d))  # (H·d_head, d): g_z = g @ W_O.T
            self.W_V.append(attn.W_V.detach().permute(0, 2, 1).reshape(H * d_head, d).contiguous())  # g = g_v @ W_V
            self.patterns.append(rm.frozen[f"blocks.{l}.attn.hook_pattern"][0])  # (H, query, key)
            self.ln1_w.append(None if ln1.w is None else ln1.w.detach())
            self.ln1_scale.append(rm.frozen[f"blocks.{l}.ln1.hook_scale"][0])  # (pos, 1)
            self.n_heads.append(H)
        self.embed = rm.model.embed(rm.tokens[None])[0].detach()  # (pos, d): what the token nodes write
        self._head_writes: dict = {}
        self._folded: dict = {}
        self._folded_flat: dict = {}

    def out_grads(self, layer: int, g: torch.Tensor, factors=None) -> torch.Tensor:
        """(B, n, H·d_head): the gradient at layer ``layer``'s head outputs (``hook_z``) of ``g`` (B, n, d) at
        its output. With usable ``factors`` (``g == coef @ basis``, :func:`attention_step`) ``W_O``
        multiplies the H + 1 basis vectors (through folded maps) instead of the n positions."""
        B, n, d = g.shape
        if self.factored(factors, n):
            above, g_mid, g_z_above, coef = factors
            basis = torch.cat([(g_mid @ self.W_O[layer].T)[:, None],  # d² per target and head, not n d²
                               torch.einsum("bhe,hfe->bhf", g_z_above, self.folded(above, layer))], 1)
            return torch.bmm(coef, basis)
        return (g.reshape(B * n, d) @ self.W_O[layer].T).view(B, n, -1)

    @staticmethod
    def factored(factors, n: int) -> bool:
        return factors is not None and factors[3].shape[2] < n

    def mix(self, layer: int, g_z: torch.Tensor) -> torch.Tensor:
        """(B, n, H·d_head): head-output gradients (B, n, H·d_head) through the frozen patterns to the values."""
        B, n, _ = g_z.shape
        g_z = g_z.view(B, n, self.n_heads[layer], -1)
        return torch.einsum("hqk,bqhe->bkhe", self.patterns[layer][:, :n, :n], g_z).reshape(B, n, -1)

    def value_grads(self, layer: int, g: torch.Tensor, factors=None) -> torch.Tensor:
        """(B, n, H·d_head): the gradient at layer ``layer``'s attention values of ``g`` (B, n, d) at its output."""
        return self.mix(layer, self.out_grads(layer, g, factors))

    def folded(self, layer: int, to: int) -> torch.Tensor:
        """(H, H'·d_head', d_head): per head of layer ``layer``, its value path into the residual
        (``W_V``, then ln1's weight and centring) followed by layer ``to``'s ``W_O`` — the map from a
        head's output gradient to the output gradients of layer ``to``'s heads, folded once per graph."""
        if (layer, to) not in self._folded:
            ln1 = self.rm.model.blocks[layer].ln1
            V = self.rm.model.blocks[layer].attn.W_V.detach()  # (H, d, d_head)
            if ln1.w is not None:
                V = V * ln1.w.detach()[:, None]
            V = V - V.mean(1, keepdim=True)
            self._folded[layer, to] = torch.einsum("fd,hde->hfe", self.W_O[to], V)
        return self._folded[layer, to]

    def attention_back(self, layer: int, g: torch.Tensor, factors=None) -> torch.Tensor:
        """(B, n, d): the gradient at ``blocks.{layer}.hook_resid_pre`` of ``g`` (B, n, d) at its
        ``hook_resid_post`` (the MLP output is a source, so the residual passes ``g`` through unchanged)."""
        B, n, d = g.shape
        g_in = (self.value_grads(layer, g, factors).reshape(B * n, -1) @ self.W_V[layer]).view(B, n, d)  # at ln1's output
        if self.ln1_w[layer] is not None:
            g_in = g_in * self.ln1_w[layer]
        g_in = g_in - g_in.mean(-1, keepdim=True)
        return g_in.div_(self.ln1_scale[layer][:n]).add_(g)

    def head_space_writes(self, layout: SourceLayout, layer: int, src: int) -> tuple[torch.Tensor, torch.Tensor]:
        """What layer ``src``'s sources (padded features (pos, k, H·d_head), errors (pos, H·d_head)) add to
        layer ``layer``'s values, per unit of value gradient: ``W_V (w ⊙ centre(write)) / scale``. A
        gradient's last attention steps then need no pass through ``W_V``: their value gradients are
        contracted with these directly (cached per graph)."""
        if (layer, src) not in self._head_writes:

            def to_values(x):
                x = x - x.mean(-1, keepdim=True)
                if self.ln1_w[layer] is not None:
                    x = x * self.ln1_w[layer]
                return x @ self.W_V[layer].T

            scale = self.ln1_scale[layer]  # (pos, 1)
            self._head_writes[layer, src] = (to_values(layout.decoders[src]) / scale[:, :, None],
                                             to_values(self.rm.errors[src]) / scale)
        return self._head_writes[layer, src]

    def contract_values(self, layout: SourceLayout, layer: int, src: int, g_v: torch.Tensor, out: torch.Tensor) -> None:
        """Add to ``out`` (B, n_sources) the effects of layer ``src``'s sources through layer ``layer``'s
        attention values, given the value gradient ``g_v`` (B, n, H·d_head)."""
        dec, err = self.head_space_writes(layout, layer, src)
        n = g_v.shape[1]
        start = layout.error_offset + src * self.rm.n_pos
        out[:, start:start + n] += torch.einsum("bpf,pf->bp", g_v, err[:n])
        col = layout.columns[src][:n]
        valid = col >= 0
        if valid.any():
            out[:, col[valid]] += torch.einsum("bpf,pkf->bpk", g_v, dec[:n])[:, valid]

    def contract_through_attention(self, layout: SourceLayout, layer: int, g: torch.Tensor, out: torch.Tensor,
                                   factors=None) -> None:
        """Add to ``out`` the effects of layer ``layer - 1``'s sources that pass through layer ``layer``'s
        attention, given the gradient ``g`` (B, n, d) at its ``hook_resid_post`` (the residual's identity
        part is :meth:`SourceLayout.contract_layer`'s)."""
        self.contract_values(layout, layer, layer - 1, self.value_grads(layer, g, factors), out)

    def last_two_steps(self, layout: SourceLayout, g: torch.Tensor, factors, out: torch.Tensor) -> None:
        """Attention layers 2 and 1 for a gradient ``g`` = ``coef @ basis`` (B, n, d) at
        ``blocks.2.hook_resid_post`` straight from a closed form at layer 3 (``factors``): layer 1's and
        layer 0's sources in value space, so the gradient is never formed in the residual below layer 2
        — one (B·n × d) @ (d × d) product (layer 2's value gradients into layer 1's head outputs,
        folded) instead of two (``W_V`` of layer 2, ``W_O`` of layer 1). The residual's identity parts
        (``g`` itself) are the caller's :meth:`SourceLayout.contract_layer`."""
        g_v2 = self.value_grads(2, g, factors)
        self.contract_values(layout, 2, 1, g_v2, out)
        self.contract_values(layout, 2, 0, g_v2, out)
        if 2 not in self._folded_flat:
            F = self.folded(2, 1)  # (H2, F1, d_head2)
            self._folded_flat[2] = F.permute(0, 2, 1).reshape(-1, F.shape[1])  # (F2, F1)
        n = g.shape[1]
        g_z1 = self.out_grads(1, g, factors) + (g_v2 @ self._folded_flat[2]) / self.ln1_scale[2][:n]
        self.contract_values(layout, 1, 0, self.mix(1, g_z1), out)

    def attention_forward(self, layer: int, x: torch.Tensor, first: int) -> torch.Tensor:
        """(B, n, d): ``blocks.{layer}.hook_resid_mid`` of the frozen linear model (no biases) given its
        ``hook_resid_pre`` ``x`` (B, n, d) at positions ``first .. first + n - 1`` (earlier ones zero)."""
        B, n, d = x.shape
        H, sl = self.n_heads[layer], slice(first, first + n)
        h = x - x.mean(-1, keepdim=True)
        h = h / self.ln1_scale[layer][sl]
        if self.ln1_w[layer] is not None:
            h = h * self.ln1_w[layer]
        v = (h.reshape(B * n, d) @ self.W_V[layer].T).view(B, n, H, -1)
        z = torch.einsum("hqk,bkhe->bqhe", self.patterns[layer][:, sl, sl], v).reshape(B * n, -1)
        return (z @ self.W_O[layer]).view(B, n, d).add_(x)


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
    with torch.no_grad():
        fb = FrozenBackward(rm)
        t_grad = torch.zeros_like(t_vec)  # each target's gradient at its LayerNorm's input
        for layer in range(L + 1):
            m = (t_layer == layer) & wanted
            name = "ln_final" if layer == L else f"blocks.{layer}.ln2"
            t_grad[m] = layernorm_backward(rm, name, t_vec[m], t_pos[m])
        tokens = token_edges(fb, t_layer, t_pos, t_grad)
        start = 0
        for end in _buckets(t_pos[wanted], P, batch_size, causal_buckets):
            in_bucket = (t_pos >= start) & (t_pos <= end) & wanted
            start = end + 1
            if in_bucket.any():
                _bucket_rows(rm, fb, layout, end + 1, in_bucket, t_layer, t_pos, t_grad, tokens, batch_size, out,
                             out_rows.cpu(), bar)
    bar.close()
    return out


def _bucket_rows(rm: ReplacementModel, fb: FrozenBackward, layout: SourceLayout, n: int, in_bucket, t_layer, t_pos,
                 t_grad, tokens, batch_size: int, out: torch.Tensor, out_rows: torch.Tensor, bar) -> None:
    """The rows of one bucket's targets (positions < ``n``), layer by layer, ``batch_size`` targets per
    backward pass; their token columns come from ``tokens`` (:func:`token_edges`)."""
    L = rm.n_layers
    for layer in range(L + 1):
        todo = (in_bucket & (t_layer == layer)).nonzero()[:, 0]
        for chunk in todo.split(batch_size) if len(todo) else ():
            pos, g_mid = t_pos[chunk], t_grad[chunk]
            block = torch.zeros(len(chunk), layout.n_sources, dtype=t_grad.dtype, device=t_grad.device)
            block[:, layout.token_offset:] = tokens[chunk]
            attn_layer = layer
            if layer == L:  # logits read the last residual: the last MLP output directly, then attention L-1
                direct = torch.zeros(len(chunk), n, rm.d_model, dtype=t_grad.dtype, device=t_grad.device)
                direct[:, -1] = g_mid
                layout.contract_layer(rm, L - 1, direct, block)
                attn_layer = L - 1
            if attn_layer > 0:
                # at resid_pre of attn_layer = resid_post below; low rank (factors) until the next attention step
                g, factors = attention_step(rm, attn_layer, pos, g_mid, n)
                if attn_layer == 1:
                    layout.contract_layer(rm, 0, g, block)
                for below in range(attn_layer - 1, 0, -1):  # g is at resid_post of ``below`` = its MLP output
                    layout.contract_layer(rm, below, g, block)
                    if below == 2 and fb.factored(factors, n):  # straight from a closed form at layer 3
                        layout.contract_layer(rm, 1, g, block)
                        layout.contract_layer(rm, 0, g, block)
                        fb.last_two_steps(layout, g, factors, block)
                        break
                    if below > 1:
                        g = fb.attention_back(below, g, factors)
                    else:  # the last step: layer 0's sources, the residual's identity and attention 1's value path
                        layout.contract_layer(rm, 0, g, block)
                        fb.contract_through_attention(layout, 1, g, block, factors)
                    factors = None
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
