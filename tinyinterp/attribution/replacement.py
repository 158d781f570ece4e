"""The local replacement model of one prompt: transcoders for MLPs, frozen attention and LayerNorm.

On a prompt the real model runs once (the clean pass). From it we keep every attention pattern and
every LayerNorm scale (``ln1``, ``ln2``, ``ln_final``); each MLP is replaced by its transcoder plus an
error node per (layer, position) = real MLP output − transcoder output, so the replacement model's
logits are the real ones on this prompt. Everything happens through TransformerLens hook names
(``hook_pattern``, ``hook_scale``, ``hook_mlp_out`` …), so one code path serves every architecture of
:class:`tinyinterp.models.transformer.HookedTransformer` (GPT-Neo with local and global layers, GPT-2, legacy).

With patterns, scales and the MLP outputs held fixed, what is left is linear in the sources — token
embeddings, feature activations, error vectors — plus a constant: the frozen linear model whose
direct effects are the attribution graph's edges (:mod:`tinyinterp.attribution.attribute`).

BOS: when the prompt starts with ``<|endoftext|>`` (our BOS) and ``exclude_bos`` is on, its position's
MLP outputs are kept as constants (no feature or error nodes there), as circuit-tracer does: the BOS
position is the same in every prompt and acts as a bias (attention sink).

    rm = ReplacementModel(model, transcoders, tokens)
    rm.replacement_logits()          # == model(tokens)[0]
    rm.frozen_forward(feature_values=rm.activation_values * 0)   # the linear model without features
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tinyinterp.errors import TinyinterpError


@dataclass
class LinearGraph:
    """One forward pass of the frozen linear model on a prompt prefix, ready for backward passes."""

    n_pos: int
    embed: torch.Tensor
    """(1, n_pos, d_model) token embeddings: a leaf that requires grad (the token nodes)."""
    mlp_out: list[torch.Tensor]
    """Per layer (1, n_pos, d_model) MLP outputs: leaves that require grad (feature and error nodes write here)."""
    reads: list[torch.Tensor]
    """Per layer (1, n_pos, d_model) ``ln2.hook_normalized``: what the transcoders read (feature targets)."""
    final: torch.Tensor
    """(1, n_pos, d_model) ``ln_final.hook_normalized``: what the unembedding reads (logit targets)."""
    resid_pre: list[torch.Tensor]
    """Per layer (1, n_pos, d_model) ``hook_resid_pre``: where a target's gradient enters after its own layer's attention."""


class ReplacementModel:
    """The clean pass of ``model`` on ``tokens`` (1-D) and the replacement built from it.

    Attributes (``n`` = number of active features):
      ``active_features`` (n, 3) long [layer, pos, feature]; ``activation_values`` (n,);
      ``encoder_vecs`` / ``decoder_vecs`` (n, d_model) the features' encoder columns and decoder rows;
      ``errors`` (n_layers, n_pos, d_model); ``constant_out`` (n_layers, n_pos, d_model): the part of
      each MLP output that is no node (the transcoders' ``b_dec``; the whole output at an excluded BOS);
      ``logits`` (n_pos, d_vocab) of the real model; ``mlp_in`` / ``mlp_out`` of the clean pass.
    """

    def __init__(self, model, transcoders, tokens: torch.Tensor, exclude_bos: bool = True):
        cfg = model.cfg
        if getattr(cfg, "use_split_qkv_input", False) or getattr(cfg, "use_attn_in", False):
            raise TinyinterpError("attribution needs the shared ln1 input: call model.set_use_split_qkv_input(False) "
                                  "and model.set_use_attn_in(False) first")
        if len(transcoders) != cfg.n_layers:
            raise TinyinterpError(f"{len(transcoders)} transcoders for a model of {cfg.n_layers} layers")
        tokens = torch.as_tensor(tokens, dtype=torch.long).reshape(-1)
        if tokens.numel() == 0:
            raise TinyinterpError("attribution needs a prompt of at least one token")
        if tokens.numel() > cfg.n_ctx:
            raise TinyinterpError(f"prompt of {tokens.numel()} tokens exceeds the model's context of {cfg.n_ctx}; shorten it")
        self.model, self.transcoders = model, transcoders
        self.device = next(model.parameters()).device
        self.tokens = tokens.to(self.device)
        self.n_layers, self.n_pos, self.d_model = cfg.n_layers, tokens.numel(), cfg.d_model
        tokenizer = getattr(model, "tokenizer", None)
        bos = tokenizer.eot_id if tokenizer is not None else None
        self.bos_excluded = bool(exclude_bos and bos is not None and int(tokens[0]) == bos)
        self._clean_pass()

    # --- the clean pass -------------------------------------------------------------------------

    def _frozen_names(self) -> list[str]:
        names = []
        for l in range(self.n_layers):
            names += [f"blocks.{l}.attn.hook_pattern", f"blocks.{l}.ln1.hook_scale", f"blocks.{l}.ln2.hook_scale"]
        return names + ["ln_final.hook_scale"]

    @torch.no_grad()
    def _clean_pass(self) -> None:
        L = self.n_layers
        names = self._frozen_names()
        names += [f"blocks.{l}.ln2.hook_normalized" for l in range(L)] + [f"blocks.{l}.hook_mlp_out" for l in range(L)]
        logits, cache = self.model.run_with_cache(self.tokens[None], names_filter=names, return_cache_object=False)
        self.logits = logits[0]  # (n_pos, d_vocab)
        self.frozen = {n: cache[n] for n in self._frozen_names()}
        self.mlp_in = torch.stack([cache[f"blocks.{l}.ln2.hook_normalized"][0] for l in range(L)])  # (L, pos, d)
        self.mlp_out = torch.stack([cache[f"blocks.{l}.hook_mlp_out"][0] for l in range(L)])

        layers, positions, features, values = [], [], [], []
        constant = torch.empty_like(self.mlp_out)
        recon = torch.empty_like(self.mlp_out)
        for l, coder in enumerate(self.transcoders):
            vals, idx, _ = coder.encode_topk(self.mlp_in[l])  # (pos, k)
            active = vals > 0
            if self.bos_excluded:
                active[0] = False
            p, j = active.nonzero(as_tuple=True)
            order = torch.argsort(p * coder.cfg.d_sae + idx[p, j], stable=True)  # by position, then feature
            p, j = p[order], j[order]
            layers.append(torch.full_like(p, l))
            positions.append(p)
            features.append(idx[p, j])
            values.append(vals[p, j])
            constant[l] = coder.b_dec
            recon[l] = coder.b_dec + torch.zeros_like(recon[l]).index_add_(0, p, vals[p, j, None] * coder.W_dec[idx[p, j]])
        if self.bos_excluded:  # the BOS position's MLP output is a constant of the linear model
            constant[:, 0] = self.mlp_out[:, 0]
            recon[:, 0] = self.mlp_out[:, 0]
        self.constant_out = constant
        self.errors = self.mlp_out - recon
        self.active_features = torch.stack([torch.cat(layers), torch.cat(positions), torch.cat(features)], dim=1)
        self.activation_values = torch.cat(values)
        f_layer, f_feat = self.active_features[:, 0], self.active_features[:, 2]
        d = self.d_model
        self.encoder_vecs = torch.empty(len(f_layer), d, dtype=self.mlp_out.dtype, device=self.device)
        self.decoder_vecs = torch.empty_like(self.encoder_vecs)
        self.encoder_biases = torch.empty(len(f_layer), dtype=self.mlp_out.dtype, device=self.device)
        for l, coder in enumerate(self.transcoders):
            m = f_layer == l
            self.encoder_vecs[m] = coder.W_enc[:, f_feat[m]].T
            self.decoder_vecs[m] = coder.W_dec[f_feat[m]]
            self.encoder_biases[m] = coder.b_enc[f_feat[m]]

    @property
    def n_active(self) -> int:
        return len(self.activation_values)

    # --- hooks ----------------------------------------------------------------------------------

    def _freeze_hooks(self, n_pos: int) -> list:
        """Replace patterns and LayerNorm scales by the clean pass's (first ``n_pos`` positions)."""

        def frozen(value, hook):
            cached = self.frozen[hook.name]
            cached = cached[..., :n_pos, :n_pos] if hook.name.endswith("hook_pattern") else cached[:, :n_pos]
            return cached.expand_as(value)

        return [(name, frozen) for name in self.frozen]

    def _mlp_out(self, layer: int, n_pos: int, feature_values: torch.Tensor, error_scale: torch.Tensor | float):
        """(n_pos, d_model) MLP output of the frozen model with the given feature activations."""
        m = self.active_features[:, 0] == layer
        pos = self.active_features[m, 1]
        keep = pos < n_pos
        out = self.constant_out[layer, :n_pos] + self.errors[layer, :n_pos] * _rows(error_scale, layer, n_pos)
        writes = feature_values[m][keep, None] * self.decoder_vecs[m][keep]
        return out.index_add(0, pos[keep], writes)

    def _pre_activations(self, reads: list[torch.Tensor], n_pos: int | None = None) -> torch.Tensor:
        """(n,) linear pre-activation x·W_enc + b_enc of every active feature at its (layer, pos)."""
        layer, pos = self.active_features[:, 0], self.active_features[:, 1]
        x = torch.stack([r[0] for r in reads])[layer, pos]  # (n, d)
        return (x * self.encoder_vecs).sum(-1) + self.encoder_biases

    # --- forward passes -------------------------------------------------------------------------

    @torch.no_grad()
    def replacement_logits(self) -> torch.Tensor:
        """(n_pos, d_vocab) logits of the local replacement model: frozen patterns and scales, each MLP
        computed by its transcoder (TopK on the actual input) plus the frozen error (and BOS constant)."""
        P = self.n_pos

        def transcode(value, hook, layer):
            x = reads[layer][0]
            coder = self.transcoders[layer]
            vals, idx, _ = coder.encode_topk(x)
            out = coder.decode_topk(vals, idx) + self.errors[layer]
            if self.bos_excluded:
                out[0] = self.constant_out[layer, 0]
            return out[None].to(value.dtype)

        reads: list = [None] * self.n_layers

        def read(value, hook, layer):
            reads[layer] = value
            return value

        hooks = self._freeze_hooks(P)
        for l in range(self.n_layers):
            hooks += [(f"blocks.{l}.ln2.hook_normalized", _bind(read, l)), (f"blocks.{l}.hook_mlp_out", _bind(transcode, l))]
        with self.model.hooks(fwd_hooks=hooks):
            return self.model(self.tokens[None])[0]

    @torch.no_grad()
    def frozen_forward(self, feature_values: torch.Tensor | None = None, error_scale: torch.Tensor | float = 1.0,
                       token_scale: torch.Tensor | float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """The frozen linear model with its sources set: ``(logits (n_pos, d_vocab), pre-activations (n,))``.

        ``feature_values`` (n,) replaces the active features' activations (default: the clean ones);
        ``error_scale`` multiplies the error vectors (a float, or (n_layers, n_pos)); ``token_scale`` the
        token embeddings (a float or (n_pos,)). Nothing is recomputed from the MLP inputs, so the output
        is affine in the sources: all zero gives the constant (bias) terms."""
        P = self.n_pos
        values = self.activation_values if feature_values is None else feature_values.to(self.activation_values)
        reads: list = [None] * self.n_layers

        def read(value, hook, layer):
            reads[layer] = value
            return value

        def mlp(value, hook, layer):
            return self._mlp_out(layer, P, values, error_scale)[None].to(value.dtype)

        def embed(value, hook):
            scale = torch.as_tensor(token_scale, dtype=value.dtype, device=value.device)
            return value * (scale[None, :, None] if scale.dim() == 1 else scale)

        hooks = self._freeze_hooks(P) + [("hook_embed", embed)]
        for l in range(self.n_layers):
            hooks += [(f"blocks.{l}.ln2.hook_normalized", _bind(read, l)), (f"blocks.{l}.hook_mlp_out", _bind(mlp, l))]
        with self.model.hooks(fwd_hooks=hooks):
            logits = self.model(self.tokens[None])[0]
        return logits, self._pre_activations(reads)

    def linear_graph(self, n_pos: int | None = None, values_only: bool = True) -> LinearGraph:
        """Run the frozen linear model once on the first ``n_pos`` tokens (batch 1) with autograd on.

        Sources are leaves (token embeddings, MLP outputs); parameters take no gradient. With
        ``values_only`` attention's values are recomputed from ``ln1``'s output with ``W_V`` alone, so
        that a backward pass does not multiply through the fused q/k/v projection (q and k only feed
        the frozen pattern, so their gradient is zero anyway)."""
        P = self.n_pos if n_pos is None else n_pos
        model = self.model
        leaves: dict = {}
        reads: list = [None] * self.n_layers
        ln1: list = [None] * self.n_layers

        def embed_leaf(value, hook):
            leaves["embed"] = value.detach().clone().requires_grad_(True)
            return leaves["embed"]

        def mlp_leaf(value, hook, layer):
            leaves[layer] = self.mlp_out[layer, :P][None].clone().requires_grad_(True)
            return leaves[layer]

        def read(value, hook, layer):
            reads[layer] = value
            return value

        def read_ln1(value, hook, layer):
            ln1[layer] = value
            return value

        def v_from_ln1(value, hook, layer):
            attn = model.blocks[layer].attn
            H, d_head = attn.W_V.shape[0], attn.W_V.shape[2]
            W = attn.W_V.permute(1, 0, 2).reshape(self.d_model, H * d_head)  # one matmul, not one per head
            v = ln1[layer] @ W + attn.b_V.reshape(-1)
            return v.view(*v.shape[:2], H, d_head)

        resid_pre: list = [None] * self.n_layers
        hooks = self._freeze_hooks(P) + [("hook_embed", embed_leaf)]
        for l in range(self.n_layers):
            hooks += [(f"blocks.{l}.hook_resid_pre", _bind(_store(resid_pre), l)),
                      (f"blocks.{l}.ln2.hook_normalized", _bind(read, l)), (f"blocks.{l}.hook_mlp_out", _bind(mlp_leaf, l))]
            if values_only:
                hooks += [(f"blocks.{l}.ln1.hook_normalized", _bind(read_ln1, l)), (f"blocks.{l}.attn.hook_v", _bind(v_from_ln1, l))]
        final: dict = {}

        def read_final(value, hook):
            final["x"] = value
            return value

        hooks.append(("ln_final.hook_normalized", read_final))
        with _no_parameter_grads(model), torch.enable_grad(), model.hooks(fwd_hooks=hooks):
            model(self.tokens[None, :P], return_type=None)
        return LinearGraph(P, leaves["embed"], [leaves[l] for l in range(self.n_layers)], reads, final["x"], resid_pre)


def _store(into: list):
    def hook(value, hook, layer):
        into[layer] = value
        return value

    return hook


def _rows(scale, layer: int, n_pos: int):
    if torch.is_tensor(scale) and scale.dim() == 2:
        return scale[layer, :n_pos, None]
    return scale


def _bind(fn, layer: int):
    def hook(value, hook):
        return fn(value, hook, layer)

    return hook


class _no_parameter_grads:
    """Parameters take no gradient while the linear graph is built (restored afterwards)."""

    def __init__(self, model):
        self.params = [p for p in model.parameters() if p.requires_grad]

    def __enter__(self):
        for p in self.params:
            p.requires_grad_(False)

    def __exit__(self, *exc):
        for p in self.params:
            p.requires_grad_(True)
