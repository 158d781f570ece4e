"""TransformerLens's weight names and shapes on tinyinterp's fused parameters.

Our layers store weights the way ``nn.Linear`` does (``qkv.weight`` (3·d_model, d_model) with rows
q | k | v, head-major; ``out.weight`` (d_model, d_model); ``fc_in``/``fc_out``; ``embed``/``unembed``),
which keeps runs of every tinyinterp version loading. These mixins add TL's names on top:

* per block — ``model.blocks[l].attn.W_Q`` (n_heads, d_model, d_head), ``W_K``, ``W_V``, ``W_O``
  (n_heads, d_head, d_model), ``b_Q``/``b_K``/``b_V`` (n_heads, d_head), ``b_O`` (d_model),
  ``QK``/``OV`` as ``FactoredMatrix``; ``model.blocks[l].mlp.W_in`` (d_model, d_mlp), ``b_in``,
  ``W_out`` (d_mlp, d_model), ``b_out``;
* model-wide — ``W_E`` (d_vocab, d_model), ``W_pos`` (n_ctx, d_model), ``W_U`` (d_model, d_vocab),
  ``b_U``, and every per-block name stacked over layers (``model.W_Q`` (n_layers, n_heads, d_model,
  d_head), …), ``QK``/``OV``, ``accumulated_bias``.

**Views or copies.** Per-block weights and ``W_E``/``W_pos``/``W_U`` are *views* of the parameters:
editing them in place (``model.blocks[0].attn.W_Q[3] *= 0``) edits the model. Stacked (model-wide
per-layer) tensors are *copies* (``torch.stack``), and so is a bias the architecture lacks (q/k/v or
unembedding biases of a GPT-Neo model are returned as zeros).

``process_weights`` applies TL 4.3's ``ProcessWeights.process_weights`` (LayerNorm folding, centring
of writing weights and unembedding, value-bias folding) to a TL-format state dict of this model and
loads the result back, switching LayerNorms to ``LNPre`` and adding the biases folding creates.
"""

from __future__ import annotations

import einops
import torch
from torch import nn


class CircuitMatrices:
    """``QK`` and ``OV`` as ``FactoredMatrix``: (n_heads, d_model, d_model) on a block's attention,
    (n_layers, n_heads, d_model, d_model) on the model — whatever shape ``W_Q`` … ``W_O`` have there."""

    @property
    def QK(self):
        """W_Q @ W_K^T."""
        from transformer_lens.FactoredMatrix import FactoredMatrix

        return FactoredMatrix(self.W_Q, self.W_K.transpose(-2, -1))

    @property
    def OV(self):
        """W_V @ W_O."""
        from transformer_lens.FactoredMatrix import FactoredMatrix

        return FactoredMatrix(self.W_V, self.W_O)


class AttentionWeights(CircuitMatrices):
    """TL-shaped views of an :class:`tinyinterp.models.transformer.Attention`'s fused parameters."""

    def _qkv_weight(self, index: int) -> torch.Tensor:
        d, H, dh = self.cfg.d_model, self.cfg.n_heads, self.cfg.d_head
        rows = self.qkv.weight[index * d : (index + 1) * d]  # (H·dh, d_model)
        return einops.rearrange(rows, "(h dh) d -> h d dh", h=H, dh=dh)

    def _qkv_bias(self, index: int) -> torch.Tensor:
        d, H, dh = self.cfg.d_model, self.cfg.n_heads, self.cfg.d_head
        if self.qkv.bias is None:
            return torch.zeros(H, dh, device=self.qkv.weight.device, dtype=self.qkv.weight.dtype)
        return self.qkv.bias[index * d : (index + 1) * d].view(H, dh)

    @property
    def W_Q(self) -> torch.Tensor:
        """(n_heads, d_model, d_head), a view."""
        return self._qkv_weight(0)

    @property
    def W_K(self) -> torch.Tensor:
        return self._qkv_weight(1)

    @property
    def W_V(self) -> torch.Tensor:
        return self._qkv_weight(2)

    @property
    def W_O(self) -> torch.Tensor:
        """(n_heads, d_head, d_model), a view."""
        return einops.rearrange(self.out.weight, "m (h dh) -> h dh m", h=self.cfg.n_heads)

    @property
    def b_Q(self) -> torch.Tensor:
        """(n_heads, d_head): a view, or zeros (a copy) when q/k/v have no bias."""
        return self._qkv_bias(0)

    @property
    def b_K(self) -> torch.Tensor:
        return self._qkv_bias(1)

    @property
    def b_V(self) -> torch.Tensor:
        return self._qkv_bias(2)

    @property
    def b_O(self) -> torch.Tensor:
        return self.out.bias


class MLPWeights:
    """TL-shaped views of an :class:`tinyinterp.models.transformer.MLP`'s parameters."""

    @property
    def W_in(self) -> torch.Tensor:
        """(d_model, d_mlp), a view."""
        return self.fc_in.weight.T

    @property
    def b_in(self) -> torch.Tensor:
        return self.fc_in.bias

    @property
    def W_out(self) -> torch.Tensor:
        """(d_mlp, d_model), a view."""
        return self.fc_out.weight.T

    @property
    def b_out(self) -> torch.Tensor:
        return self.fc_out.bias


_ATTN_NAMES = ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V", "b_O")
_MLP_NAMES = ("W_in", "b_in", "W_out", "b_out")


def _stacked(component: str, name: str):
    def get(self) -> torch.Tensor:
        return torch.stack([getattr(getattr(block, component), name) for block in self.blocks])

    get.__doc__ = f"``blocks[l].{component}.{name}`` stacked over layers (a copy)."
    return property(get)


class ModelWeights(CircuitMatrices):
    """Model-wide TL weights, ``accumulated_bias``, TL-format state dicts and ``process_weights``."""

    @property
    def W_E(self) -> torch.Tensor:
        """(d_vocab, d_model), the embedding parameter itself."""
        return self.embed.weight

    @property
    def W_pos(self) -> torch.Tensor:
        return self.pos_embed.weight

    @property
    def W_E_pos(self) -> torch.Tensor:
        """Token and position embeddings concatenated, (d_vocab + n_ctx, d_model) (a copy)."""
        return torch.cat([self.W_E, self.W_pos], dim=0)

    @property
    def W_U(self) -> torch.Tensor:
        """(d_model, d_vocab), a view (of the embedding when they are tied)."""
        return self.unembed.weight.T

    @property
    def b_U(self) -> torch.Tensor:
        """(d_vocab,): the bias, or zeros (a copy) when the unembedding has none."""
        if self.unembed.bias is None:
            return torch.zeros(self.cfg.d_vocab, device=self.unembed.weight.device, dtype=self.unembed.weight.dtype)
        return self.unembed.bias

    def accumulated_bias(self, layer: int, mlp_input: bool = False, include_mlp_biases: bool = True) -> torch.Tensor:
        """Sum of the biases written to the residual stream before ``layer`` (its attention's ``b_O``
        too when ``mlp_input``), (d_model,) — TL's definition, used by ``ActivationCache``."""
        bias = torch.zeros(self.cfg.d_model, device=self.W_E.device, dtype=self.W_E.dtype)
        for block in self.blocks[:layer]:
            bias = bias + block.attn.b_O
            if include_mlp_biases:
                bias = bias + block.mlp.b_out
        if mlp_input:
            bias = bias + self.blocks[layer].attn.b_O
        return bias

    def all_head_labels(self) -> list[str]:
        return [f"L{layer}H{head}" for layer in range(self.cfg.n_layers) for head in range(self.cfg.n_heads)]

    # --- TL-format state dicts -------------------------------------------------------------------

    def tl_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights under TL's legacy ``HookedTransformer`` keys (``blocks.0.attn.W_Q`` …), as copies."""
        sd = {"embed.W_E": self.W_E, "pos_embed.W_pos": self.W_pos, "unembed.W_U": self.W_U, "unembed.b_U": self.b_U}
        for layer, block in enumerate(self.blocks):
            for name in _ATTN_NAMES:
                sd[f"blocks.{layer}.attn.{name}"] = getattr(block.attn, name)
            for name in _MLP_NAMES:
                sd[f"blocks.{layer}.mlp.{name}"] = getattr(block.mlp, name)
            for ln in ("ln1", "ln2"):
                if getattr(block, ln).w is not None:
                    sd[f"blocks.{layer}.{ln}.w"] = getattr(block, ln).w
                    sd[f"blocks.{layer}.{ln}.b"] = getattr(block, ln).b
        if self.ln_final.w is not None:
            sd["ln_final.w"], sd["ln_final.b"] = self.ln_final.w, self.ln_final.b
        return {k: v.detach().clone() for k, v in sd.items()}

    tl_parameters = tl_state_dict  # the name TL's SVDInterpreter looks for
    get_params = tl_state_dict  # the TransformerBridge's name for the same dict

    @torch.no_grad()
    def load_tl_state_dict(self, sd: dict[str, torch.Tensor]) -> None:
        """Write a TL-format state dict (as :meth:`tl_state_dict` makes) into this model's parameters.

        Keys the model has no parameter for must hold zeros (e.g. ``b_Q`` of a bias-free model)."""
        H, d = self.cfg.n_heads, self.cfg.d_model

        def put(param: torch.Tensor | None, value: torch.Tensor, key: str) -> None:
            if param is None:
                if value.abs().max() > 0:
                    raise ValueError(f"{key}: this model has no such parameter and the value is not zero")
                return
            param.copy_(value.reshape(param.shape))

        self.embed.weight.copy_(sd["embed.W_E"])
        self.pos_embed.weight.copy_(sd["pos_embed.W_pos"])
        if not self.cfg.tie_embeddings:
            self.unembed.weight.copy_(sd["unembed.W_U"].T)
        elif not torch.equal(sd["unembed.W_U"].T, self.embed.weight):
            raise ValueError("unembed.W_U differs from embed.W_E but this model ties them")
        put(self.unembed.bias, sd["unembed.b_U"], "unembed.b_U")
        for layer, block in enumerate(self.blocks):
            pre = f"blocks.{layer}."
            qkv_w = [einops.rearrange(sd[pre + f"attn.W_{x}"], "h d dh -> (h dh) d") for x in "QKV"]
            block.attn.qkv.weight.copy_(torch.cat(qkv_w, dim=0))
            put(block.attn.qkv.bias, torch.cat([sd[pre + f"attn.b_{x}"].reshape(d) for x in "QKV"]), pre + "attn.b_QKV")
            block.attn.out.weight.copy_(einops.rearrange(sd[pre + "attn.W_O"], "h dh m -> m (h dh)", h=H))
            block.attn.out.bias.copy_(sd[pre + "attn.b_O"])
            block.mlp.fc_in.weight.copy_(sd[pre + "mlp.W_in"].T)
            block.mlp.fc_in.bias.copy_(sd[pre + "mlp.b_in"])
            block.mlp.fc_out.weight.copy_(sd[pre + "mlp.W_out"].T)
            block.mlp.fc_out.bias.copy_(sd[pre + "mlp.b_out"])
            for ln in ("ln1", "ln2"):
                if getattr(block, ln).w is not None:
                    getattr(block, ln).w.copy_(sd[pre + f"{ln}.w"])
                    getattr(block, ln).b.copy_(sd[pre + f"{ln}.b"])
        if self.ln_final.w is not None:
            self.ln_final.w.copy_(sd["ln_final.w"])
            self.ln_final.b.copy_(sd["ln_final.b"])

    # --- weight processing -------------------------------------------------------------------

    def process_weights(
        self,
        fold_ln: bool = True,
        center_writing_weights: bool = True,
        center_unembed: bool = True,
        fold_value_biases: bool = True,
        refactor_factored_attn_matrices: bool = False,
    ):
        """TL's ``from_pretrained`` weight processing, in place, through TL 4.3's ``ProcessWeights``.

        Outputs are unchanged: logits exactly up to float error, except that ``center_unembed``
        shifts every position's logits by a constant (log-probabilities are unchanged). Folding
        LayerNorm turns ``ln1``/``ln2``/``ln_final`` into ``LNPre`` (no weights) and may create q/k/v
        and unembedding biases and untie the unembedding; ``cfg`` is updated to say so, so a
        processed model saves and reloads as it is. Returns the model.
        """
        from transformer_lens.weight_processing import ProcessWeights

        if self.cfg.normalization_type == "LNPre" and fold_ln:
            fold_ln = False  # already folded
        sd = ProcessWeights.process_weights(
            self.tl_state_dict(), self.cfg, fold_ln=fold_ln, center_writing_weights=center_writing_weights,
            center_unembed=center_unembed, fold_value_biases=fold_value_biases,
            refactor_factored_attn_matrices=refactor_factored_attn_matrices,
        )
        # Everything that can fail is above this line (the state dict is computed on copies): the model is
        # changed only once the result is known to fit, never left half-processed.
        self._make_room_for(sd)
        if fold_ln:
            self.cfg.normalization_type = "LNPre"
            for ln in [m for block in self.blocks for m in (block.ln1, block.ln2)] + [self.ln_final]:
                ln.w, ln.b = None, None
        self.load_tl_state_dict(sd)
        self.setup()
        return self

    def _make_room_for(self, sd: dict[str, torch.Tensor]) -> None:
        """Add the parameters a processed state dict needs that this architecture lacks."""
        device, dtype = self.W_E.device, self.W_E.dtype
        # Tied only if the processed W_U still equals the processed W_E (centring the writing weights changes
        # W_E; without center_unembed W_U stays as it was, so the two part ways).
        if self.cfg.tie_embeddings and not torch.equal(sd["unembed.W_U"].T, sd["embed.W_E"]):
            self.unembed.weight = nn.Parameter(self.embed.weight.detach().clone())
            self.cfg.tie_embeddings = False
        if self.unembed.bias is None and sd["unembed.b_U"].abs().max() > 0:
            self.unembed.bias = nn.Parameter(torch.zeros(self.cfg.d_vocab, device=device, dtype=dtype))
            self.cfg.unembed_bias = True
        needs_qkv_bias = any(
            sd[f"blocks.{layer}.attn.b_{x}"].abs().max() > 0 for layer in range(self.cfg.n_layers) for x in "QKV"
        )
        if needs_qkv_bias and not self.cfg.qkv_bias:
            for block in self.blocks:
                block.attn.qkv.bias = nn.Parameter(torch.zeros(3 * self.cfg.d_model, device=device, dtype=dtype))
            self.cfg.qkv_bias = True


for _name in _ATTN_NAMES:
    setattr(ModelWeights, _name, _stacked("attn", _name))
for _name in _MLP_NAMES:
    setattr(ModelWeights, _name, _stacked("mlp", _name))
