"""Our hooked GPT: a small decoder with the hook names of TransformerLens's old ``HookedTransformer``.

Built on ``HookedRootModule`` + ``HookPoint`` (TransformerLens 4 removed ``HookedTransformer``),
so ``run_with_cache``, ``run_with_hooks`` and hook editing work exactly as analysis code expects.
Training speed matters, so attention takes a fast path through
``F.scaled_dot_product_attention`` whenever nothing hooks ``hook_attn_scores`` or
``hook_pattern``; as soon as a hook is attached there (or ``use_fast_attention`` is off) the
pattern is materialised and the hooks fire and may edit it. Both paths agree to ~1e-6.

    >>> from tinyinterp.zoo import preset_config
    >>> model = HookedTransformer(preset_config("test-tiny", d_vocab=100))
    >>> tokens = torch.randint(0, 100, (2, 16))
    >>> logits, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_pattern"))
    >>> cache["blocks.0.attn.hook_pattern"].shape
    torch.Size([2, 4, 16, 16])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformer_lens.hook_points import HookPoint
from transformer_lens.HookedRootModule import HookedRootModule

from tinyinterp.config import ModelConfig
from tinyinterp.errors import TinyinterpError


class KVCache:
    """Keys and values of every layer for the tokens seen so far; grows in place during generation."""

    def __init__(self, n_layers: int):
        self.keys: list[torch.Tensor | None] = [None] * n_layers
        self.values: list[torch.Tensor | None] = [None] * n_layers

    def __len__(self) -> int:
        return self.length(0)

    def length(self, layer: int) -> int:
        """Tokens cached for ``layer`` (layers earlier in a forward pass are already one step ahead)."""
        return 0 if self.keys[layer] is None else self.keys[layer].shape[1]

    def extend(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append this step's ``(batch, pos, head, d_head)`` keys/values and return all of them."""
        if self.keys[layer] is not None:
            k = torch.cat([self.keys[layer], k], dim=1)
            v = torch.cat([self.values[layer], v], dim=1)
        self.keys[layer], self.values[layer] = k, v
        return k, v

    def select(self, batch_index: torch.Tensor) -> None:
        """Keep only the given batch rows (used when finished sequences are dropped)."""
        for i in range(len(self.keys)):
            if self.keys[i] is not None:
                self.keys[i] = self.keys[i][batch_index]
                self.values[i] = self.values[i][batch_index]


class LayerNorm(nn.Module):
    def __init__(self, d_model: int, eps: float):
        super().__init__()
        self.eps = eps
        self.w = nn.Parameter(torch.ones(d_model))
        self.b = nn.Parameter(torch.zeros(d_model))
        self.hook_normalized = HookPoint()  # (batch, pos, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hook_normalized(F.layer_norm(x, x.shape[-1:], self.w, self.b, self.eps))


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.cfg, self.layer = cfg, layer
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.out = nn.Linear(cfg.d_model, cfg.d_model)
        self.use_fast_attention = True
        self.hook_q = HookPoint()  # (batch, pos, head, d_head)
        self.hook_k = HookPoint()
        self.hook_v = HookPoint()
        self.hook_attn_scores = HookPoint()  # (batch, head, query_pos, key_pos), masked with -inf
        self.hook_pattern = HookPoint()  # (batch, head, query_pos, key_pos)
        self.hook_z = HookPoint()  # (batch, pos, head, d_head)

    def _pattern_is_hooked(self) -> bool:
        # run_with_cache / run_with_hooks register plain torch forward/backward hooks on HookPoints.
        return any(
            hp._forward_hooks or hp._backward_hooks for hp in (self.hook_pattern, self.hook_attn_scores)
        )

    def forward(self, x: torch.Tensor, kv_cache: KVCache | None = None) -> torch.Tensor:
        B, T, _ = x.shape
        H, dh = self.cfg.n_heads, self.cfg.d_head
        q, k, v = self.qkv(x).split(self.cfg.d_model, dim=-1)
        q = self.hook_q(q.view(B, T, H, dh))
        k = self.hook_k(k.view(B, T, H, dh))
        v = self.hook_v(v.view(B, T, H, dh))
        past = 0
        if kv_cache is not None:
            past = kv_cache.length(self.layer)
            k, v = kv_cache.extend(self.layer, k, v)
        qh, kh, vh = (t.transpose(1, 2) for t in (q, k, v))  # (B, H, pos, dh)

        if self.use_fast_attention and not self._pattern_is_hooked():
            if past == 0 or T == 1:
                z = F.scaled_dot_product_attention(qh, kh, vh, is_causal=past == 0 and T > 1)
            else:
                z = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=_causal_mask(T, past, x.device))
        else:
            scores = qh @ kh.transpose(-1, -2) / math.sqrt(dh)  # (B, H, T, past + T)
            scores = scores.masked_fill(~_causal_mask(T, past, x.device), float("-inf"))
            scores = self.hook_attn_scores(scores)
            pattern = self.hook_pattern(torch.softmax(scores, dim=-1))
            z = pattern @ vh
        z = self.hook_z(z.transpose(1, 2))  # (B, T, H, dh)
        return self.out(z.reshape(B, T, H * dh))


def _causal_mask(T: int, past: int, device: torch.device) -> torch.Tensor:
    """Boolean (T, past + T) mask: query i may see keys 0..past + i."""
    return torch.ones(T, past + T, dtype=torch.bool, device=device).tril(diagonal=past)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.fc_in = nn.Linear(cfg.d_model, cfg.d_mlp)
        self.fc_out = nn.Linear(cfg.d_mlp, cfg.d_model)
        self.act_fn = cfg.act_fn
        self.hook_pre = HookPoint()  # (batch, pos, d_mlp)
        self.hook_post = HookPoint()  # (batch, pos, d_mlp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.hook_pre(self.fc_in(x))
        if self.act_fn == "gelu_new":
            post = F.gelu(pre, approximate="tanh")
        elif self.act_fn == "gelu":
            post = F.gelu(pre)
        else:
            post = F.relu(pre)
        return self.fc_out(self.hook_post(post))


class TransformerBlock(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.ln1 = LayerNorm(cfg.d_model, cfg.layer_norm_eps)
        self.attn = Attention(cfg, layer)
        self.ln2 = LayerNorm(cfg.d_model, cfg.layer_norm_eps)
        self.mlp = MLP(cfg)
        for name in ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out"):
            setattr(self, f"hook_{name}", HookPoint())  # (batch, pos, d_model)

    def forward(self, resid: torch.Tensor, kv_cache: KVCache | None = None) -> torch.Tensor:
        resid = self.hook_resid_pre(resid)
        attn_out = self.hook_attn_out(self.attn(self.ln1(resid), kv_cache))
        resid = self.hook_resid_mid(resid + attn_out)
        mlp_out = self.hook_mlp_out(self.mlp(self.ln2(resid)))
        return self.hook_resid_post(resid + mlp_out)


class HookedTransformer(HookedRootModule):
    """GPT-style decoder (learned positions, pre-LayerNorm) exposing TransformerLens hook names."""

    def __init__(self, cfg: ModelConfig, tokenizer=None):
        super().__init__()
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.embed = nn.Embedding(cfg.d_vocab, cfg.d_model)
        self.pos_embed = nn.Embedding(cfg.n_ctx, cfg.d_model)
        self.hook_embed = HookPoint()  # (batch, pos, d_model)
        self.hook_pos_embed = HookPoint()
        self.blocks = nn.ModuleList(TransformerBlock(cfg, layer) for layer in range(cfg.n_layers))
        self.ln_final = LayerNorm(cfg.d_model, cfg.layer_norm_eps)
        self.unembed = nn.Linear(cfg.d_model, cfg.d_vocab)
        if cfg.tie_embeddings:
            self.unembed.weight = self.embed.weight
        self.reset_parameters()
        self.setup()  # HookedRootModule: index every HookPoint by name

    def reset_parameters(self) -> None:
        std = self.cfg.init_range
        for name, p in self.named_parameters():
            if name.endswith(".b") or name.endswith("bias"):
                nn.init.zeros_(p)
            elif name.endswith(".w"):
                nn.init.ones_(p)
            elif name.endswith(("attn.out.weight", "mlp.fc_out.weight")):
                # GPT-2: scale residual-stream writes so the residual norm does not grow with depth.
                nn.init.normal_(p, std=std / math.sqrt(2 * self.cfg.n_layers))
            else:
                nn.init.normal_(p, std=std)

    def set_fast_attention(self, enabled: bool) -> None:
        """Off forces the materialised-pattern path everywhere (for tests and comparisons)."""
        for block in self.blocks:
            block.attn.use_fast_attention = enabled

    def new_kv_cache(self) -> KVCache:
        return KVCache(self.cfg.n_layers)

    def forward(
        self,
        tokens: torch.Tensor,
        return_type: str | None = "logits",
        targets: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
    ):
        """Run the model on ``tokens`` (batch, pos).

        ``return_type``: ``"logits"`` (batch, pos, d_vocab), ``"loss"`` (mean next-token
        cross-entropy in nats; against ``targets`` when given, else tokens shifted by one),
        ``"both"`` (logits, loss), or ``None``.
        """
        if tokens.dim() == 1:
            tokens = tokens.unsqueeze(0)
        past = len(kv_cache) if kv_cache is not None else 0
        T = tokens.shape[1]
        if past + T > self.cfg.n_ctx:
            raise TinyinterpError(
                f"sequence of {past + T} tokens exceeds the model's context of {self.cfg.n_ctx}; "
                "shorten the prompt or generate fewer tokens"
            )
        positions = torch.arange(past, past + T, device=tokens.device)
        resid = self.hook_embed(self.embed(tokens)) + self.hook_pos_embed(self.pos_embed(positions))
        for block in self.blocks:
            resid = block(resid, kv_cache)
        logits = self.unembed(self.ln_final(resid))
        if return_type == "logits":
            return logits
        if return_type is None:
            return None
        if targets is None:
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))
        else:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        if return_type == "loss":
            return loss
        if return_type == "both":
            return logits, loss
        raise ValueError(f"return_type must be 'logits', 'loss', 'both' or None, got {return_type!r}")
