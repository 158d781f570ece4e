"""Our hooked GPT: a small decoder with the hook names of TransformerLens's old ``HookedTransformer``.

Built on ``HookedRootModule`` + ``HookPoint`` (TransformerLens 4 removed ``HookedTransformer``),
so ``run_with_cache``, ``run_with_hooks`` and hook editing work exactly as analysis code expects.
Training speed matters, so attention takes a fast path through
``F.scaled_dot_product_attention`` whenever nothing may observe ``hook_attn_scores`` or
``hook_pattern``; as soon as anything may (a torch hook — run_with_cache / run_with_hooks — or a
``forward`` replaced on the HookPoint, which is how nnsight instruments, see :func:`_is_hooked`), or
``use_fast_attention`` is off, the pattern is materialised and the hooks fire and may edit it. Both
paths agree to ~1e-6. LayerNorm's ``hook_scale`` follows the same rule.

    >>> from tinyinterp.models.zoo import preset_config
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
from torch.nn.modules import module as _torch_module
from transformer_lens.hook_points import HookPoint

try:  # TL 3.9 / 4.x: its own module (importing it from hook_points there is deprecated and warns)
    from transformer_lens.HookedRootModule import HookedRootModule
except ImportError:  # older TL (e.g. 3.2.1) has it only in hook_points
    from transformer_lens.hook_points import HookedRootModule

from tinyinterp.models.config import ModelConfig
from tinyinterp.errors import TinyinterpError
from tinyinterp.models.tl_tokens import TokenMethods
from tinyinterp.models.tl_weights import AttentionWeights, MLPWeights, ModelWeights


class KVCache:
    """Keys and values of every layer for the tokens seen so far; grows in place during generation."""

    def __init__(self, n_layers: int):
        self.keys: list[torch.Tensor | None] = [None] * n_layers
        self.values: list[torch.Tensor | None] = [None] * n_layers
        # (batch, tokens so far) bool, True = a real token; None while every cached token is real.
        # Set by HookedTransformer.forward, so that left-padded prompts stay masked in later steps.
        self.attention_mask: torch.Tensor | None = None

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
        if self.attention_mask is not None:
            self.attention_mask = self.attention_mask[batch_index]


def _is_hooked(*hook_points: HookPoint) -> bool:
    """Whether anything may observe these HookPoints, so that the fast path (which skips them) must not run.

    ``run_with_cache`` / ``run_with_hooks`` register torch forward/backward hooks; nnsight (0.8) and other
    tracers register none and instead replace the HookPoint's ``forward`` on the instance; global torch
    module hooks see every module. Any of these means the activation is produced. All checks are
    dictionary look-ups, so the training path stays as fast as before."""
    if _torch_module._global_forward_hooks or _torch_module._global_forward_pre_hooks or _torch_module._global_backward_hooks:
        return True
    return any(
        hp._forward_hooks or hp._forward_pre_hooks or hp._backward_hooks or "forward" in hp.__dict__ for hp in hook_points
    )


class Embed(nn.Embedding):
    """Token embedding; ``W_E`` (d_vocab, d_model) is its weight, as on TL's ``Embed`` (the parameter
    stays ``embed.weight`` so every saved run loads)."""

    @property
    def W_E(self) -> torch.Tensor:
        return self.weight


class PosEmbed(nn.Embedding):
    """Learned positions; ``W_pos`` (n_ctx, d_model) is its weight, as on TL's ``PosEmbed``."""

    @property
    def W_pos(self) -> torch.Tensor:
        return self.weight


class Unembed(nn.Linear):
    """Unembedding; ``W_U`` (d_model, d_vocab) is a view of its weight, ``b_U`` its bias (zeros, a copy,
    when the architecture has none), as on TL's ``Unembed``."""

    @property
    def W_U(self) -> torch.Tensor:
        return self.weight.T

    @property
    def b_U(self) -> torch.Tensor:
        if self.bias is None:
            return torch.zeros(self.out_features, device=self.weight.device, dtype=self.weight.dtype)
        return self.bias


def hook_aliases(n_layers: int) -> dict[str, str]:
    """TL 4.3's bridge-style hook names → ours, for every alias that observes AND patches the same
    tensor as the bridge (``utils.get_act_name("in", l)`` = ``blocks.{l}.hook_in`` = ``hook_resid_pre``).

    Left out on purpose: names whose patching would differ (``ln1.hook_in`` feeds only ln1 on the
    bridge, ours would be the whole residual; ``attn.q.hook_in`` feeds only q)."""
    aliases = {
        "embed.hook_in": "hook_tokens",
        "embed.hook_out": "hook_embed",
        "pos_embed.hook_out": "hook_pos_embed",
        "ln_final.hook_in": f"blocks.{n_layers - 1}.hook_resid_post",
        "ln_final.hook_out": "ln_final.hook_normalized",
        "unembed.hook_in": "ln_final.hook_normalized",
    }
    for l in range(n_layers):
        b = f"blocks.{l}."
        aliases.update({
            b + "hook_in": b + "hook_resid_pre",
            b + "hook_out": b + "hook_resid_post",
            b + "ln1.hook_out": b + "ln1.hook_normalized",
            b + "attn.hook_in": b + "ln1.hook_normalized",
            b + "attn.q.hook_out": b + "attn.hook_q",
            b + "attn.k.hook_out": b + "attn.hook_k",
            b + "attn.v.hook_out": b + "attn.hook_v",
            b + "attn.o.hook_in": b + "attn.hook_z",
            b + "attn.o.hook_out": b + "hook_attn_out",
            b + "attn.hook_out": b + "hook_attn_out",
            b + "ln2.hook_in": b + "hook_resid_mid",
            b + "ln2.hook_out": b + "ln2.hook_normalized",
            b + "mlp.hook_in": b + "ln2.hook_normalized",
            b + "mlp.in.hook_in": b + "ln2.hook_normalized",
            b + "mlp.in.hook_out": b + "mlp.hook_pre",
            b + "mlp.out.hook_in": b + "mlp.hook_post",
            b + "mlp.out.hook_out": b + "hook_mlp_out",
            b + "mlp.hook_out": b + "hook_mlp_out",
        })
    return aliases


class _AliasedCache(dict):
    """A cache dict that also answers to the bridge-style aliases of the names it holds."""

    def __init__(self, data: dict, aliases: dict[str, str]):
        super().__init__(data)
        self._aliases = aliases

    def __missing__(self, key):
        target = self._aliases.get(key) if isinstance(key, str) else None
        if target is None or not dict.__contains__(self, target):
            raise KeyError(key)
        return dict.__getitem__(self, target)


class LayerNorm(nn.Module):
    """LayerNorm as TransformerLens writes it: ``hook_scale`` (batch, pos, 1) = sqrt(var + eps), then
    ``hook_normalized`` = (x - mean) / scale * w + b. ``affine=False`` is TL's ``LNPre`` (the weights
    were folded into the next layer by ``process_weights``): no ``w``/``b`` parameters.

    The fused ``F.layer_norm`` kernel runs unless ``hook_scale`` is hooked (same numbers to ~1e-7)."""

    def __init__(self, d_model: int, eps: float, affine: bool = True):
        super().__init__()
        self.eps = eps
        self.w = nn.Parameter(torch.ones(d_model)) if affine else None
        self.b = nn.Parameter(torch.zeros(d_model)) if affine else None
        self.hook_scale = HookPoint()  # (batch, pos, 1)
        self.hook_normalized = HookPoint()  # (batch, pos, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _is_hooked(self.hook_scale):
            return self.hook_normalized(F.layer_norm(x, x.shape[-1:], self.w, self.b, self.eps))
        x = x - x.mean(-1, keepdim=True)
        scale = self.hook_scale((x.pow(2).mean(-1, keepdim=True) + self.eps).sqrt())
        x = x / scale
        if self.w is not None:
            x = x * self.w + self.b
        return self.hook_normalized(x)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """The same normalisation without firing this module's hooks (TL's bridge normalises the
        per-head residual copies of ``use_split_qkv_input`` / ``use_attn_in`` this way)."""
        return F.layer_norm(x, x.shape[-1:], self.w, self.b, self.eps)


class Attention(AttentionWeights, nn.Module):
    """Multi-head causal self-attention; ``local`` layers see only the last ``window_size`` keys.

    Parameters are stored fused (``qkv``: rows q | k | v, head-major) so runs from tinyinterp 0.1
    load unchanged; :class:`~tinyinterp.models.tl_weights.AttentionWeights` exposes them in TL's shapes.
    """

    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.cfg, self.layer = cfg, layer
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=cfg.qkv_bias)
        self.out = nn.Linear(cfg.d_model, cfg.d_model)
        self.window = cfg.window_size if cfg.attn_type(layer) == "local" else None
        self.scale = 1 / math.sqrt(cfg.d_head) if cfg.use_attn_scale else 1.0
        self.use_fast_attention = True
        self.hook_q = HookPoint()  # (batch, pos, head, d_head)
        self.hook_k = HookPoint()
        self.hook_v = HookPoint()
        self.hook_attn_scores = HookPoint()  # (batch, head, query_pos, key_pos), masked with -inf
        self.hook_pattern = HookPoint()  # (batch, head, query_pos, key_pos)
        self.hook_z = HookPoint()  # (batch, pos, head, d_head)
        self.hook_result = HookPoint()  # (batch, pos, head, d_model), only with cfg.use_attn_result
        # (batch, pos, head, d_model) per-head copies of the pre-ln1 residual; only with
        # cfg.use_split_qkv_input (q/k/v input) or cfg.use_attn_in (attn_in), fed by the block.
        self.hook_q_input = HookPoint()
        self.hook_k_input = HookPoint()
        self.hook_v_input = HookPoint()
        self.hook_attn_in = HookPoint()

    def forward(
        self,
        x: torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        kv_cache: KVCache | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``x``: the normalised residual (batch, pos, d_model), or — with the per-head forks — the
        normalised per-head inputs of q, k and v, each (batch, pos, head, d_model).

        ``attention_mask`` (batch, past + pos) bool, True = a real token: padding keys are never
        attended to; a padding query's pattern row is all zeros (TL's convention) and its ``z`` is 0."""
        H, dh = self.cfg.n_heads, self.cfg.d_head
        if isinstance(x, tuple):  # per-head inputs: project each head with its own slice only
            B, T = x[0].shape[:2]
            q, k, v = (
                torch.einsum("bphm,hmd->bphd", inp, w) + b
                for inp, w, b in zip(x, (self.W_Q, self.W_K, self.W_V), (self.b_Q, self.b_K, self.b_V))
            )
            x = x[0]
        else:
            B, T, _ = x.shape
            q, k, v = (t.view(B, T, H, dh) for t in self.qkv(x).split(self.cfg.d_model, dim=-1))
        if _is_hooked(self.hook_q, self.hook_k, self.hook_v):
            # split()'s outputs are views autograd forbids editing in place; TL demos edit hook_v in place.
            q, k, v = q.clone(), k.clone(), v.clone()
        q, k, v = self.hook_q(q), self.hook_k(k), self.hook_v(v)
        past = 0
        if kv_cache is not None:
            past = kv_cache.length(self.layer)
            k, v = kv_cache.extend(self.layer, k, v)
        qh, kh, vh = (t.transpose(1, 2) for t in (q, k, v))  # (B, H, pos, dh)
        # Within the window a local layer is exactly causal, so the fast causal kernel still applies.
        windowed = self.window is not None and past + T > self.window

        if attention_mask is not None:
            keep = attention_mask[:, None, None, :] & _attention_mask(T, past, self.window, x.device)  # (B, 1, T, S)
            real_query = attention_mask[:, past:, None].unsqueeze(1)  # (B, 1, T, 1)

        if self.use_fast_attention and not _is_hooked(self.hook_pattern, self.hook_attn_scores):
            if attention_mask is not None:
                # A padding query would see no key (NaN): let it see all, then zero its output as the
                # materialised path does.
                z = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=keep | ~real_query, scale=self.scale)
                z = z * real_query
            elif windowed or (past and T > 1):
                mask = _attention_mask(T, past, self.window, x.device)
                z = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=mask, scale=self.scale)
            else:
                z = F.scaled_dot_product_attention(qh, kh, vh, is_causal=past == 0 and T > 1, scale=self.scale)
        else:
            scores = qh @ kh.transpose(-1, -2)  # (B, H, T, past + T)
            if self.scale != 1.0:  # GPT-Neo does not scale: skip a full pass over the scores
                scores = scores * self.scale
            mask = keep if attention_mask is not None else _attention_mask(T, past, self.window, x.device)
            scores = self.hook_attn_scores(scores.masked_fill(~mask, float("-inf")))
            pattern = torch.softmax(scores, dim=-1)
            if attention_mask is not None:  # padding queries: all keys masked, softmax is NaN
                pattern = torch.where(real_query, pattern, torch.zeros((), dtype=pattern.dtype, device=pattern.device))
            pattern = self.hook_pattern(pattern)
            z = pattern @ vh
        z = self.hook_z(z.transpose(1, 2))  # (B, T, H, dh)
        if not self.cfg.use_attn_result:
            return self.out(z.reshape(B, T, H * dh))
        result = self.hook_result(torch.einsum("bphd,hdm->bphm", z, self.W_O))  # (B, T, H, d_model)
        return result.sum(dim=2) + self.out.bias


def _attention_mask(T: int, past: int, window: int | None, device: torch.device) -> torch.Tensor:
    """Boolean (T, past + T) mask: query i (absolute position past + i) sees keys j with
    j <= past + i, and with a window also past + i - j < window (GPT-Neo's local attention)."""
    mask = torch.ones(T, past + T, dtype=torch.bool, device=device).tril(diagonal=past)
    if window is not None:
        mask &= ~torch.ones(T, past + T, dtype=torch.bool, device=device).tril(diagonal=past - window)
    return mask


class MLP(MLPWeights, nn.Module):
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
    # TL's logit lens / jacobian lens check this: hook_resid_post is the one stream ln_final reads.
    hook_out_is_single_residual_stream = True

    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        affine = cfg.normalization_type == "LN"
        self.ln1 = LayerNorm(cfg.d_model, cfg.layer_norm_eps, affine)
        self.attn = Attention(cfg, layer)
        self.ln2 = LayerNorm(cfg.d_model, cfg.layer_norm_eps, affine)
        self.mlp = MLP(cfg)
        self.cfg = cfg
        for name in ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "mlp_in"):
            setattr(self, f"hook_{name}", HookPoint())  # (batch, pos, d_model); mlp_in with cfg.use_hook_mlp_in
        # Legacy HookedTransformer names of the attention's forks (TL's bridge keeps both too):
        # blocks.{l}.hook_q_input fires, then blocks.{l}.attn.hook_q_input, on the same tensor.
        for name in ("q_input", "k_input", "v_input", "attn_in"):
            setattr(self, f"hook_{name}", HookPoint())  # (batch, pos, head, d_model)

    def forward(
        self, resid: torch.Tensor, kv_cache: KVCache | None = None, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        resid = self.hook_resid_pre(resid)
        cfg = self.cfg
        if cfg.use_split_qkv_input or cfg.use_attn_in:
            attn_out = self.hook_attn_out(self.attn(self._forked_attn_inputs(resid), kv_cache, attention_mask))
        else:  # the fast path: one shared normalised input
            attn_out = self.hook_attn_out(self.attn(self.ln1(resid), kv_cache, attention_mask))
        resid = self.hook_resid_mid(resid + attn_out)
        mlp_in = self.hook_mlp_in(resid.clone()) if cfg.use_hook_mlp_in else resid
        mlp_out = self.hook_mlp_out(self.mlp(self.ln2(mlp_in)))
        return self.hook_resid_post(resid + mlp_out)

    def _forked_attn_inputs(self, resid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-head copies of the PRE-ln1 residual, hooked, then normalised per head — the semantics of
        TL 4.3's bridge in compatibility mode (and of the legacy HookedTransformer), so that a path
        patch adds a residual-stream write before the LayerNorm that reads it.

        ``ln1`` still runs once on the shared residual so that its hooks fire as on the bridge; its
        output is not what q/k/v read here (patching ``ln1.hook_normalized`` has no effect)."""
        self.ln1(resid)
        H = self.cfg.n_heads

        def fork(*hooks: HookPoint) -> torch.Tensor:
            x = resid.unsqueeze(2).expand(-1, -1, H, -1).clone()  # (batch, pos, head, d_model)
            for hook in hooks:
                x = hook(x)
            return self.ln1.normalize(x)

        if self.cfg.use_split_qkv_input:
            return (
                fork(self.hook_q_input, self.attn.hook_q_input),
                fork(self.hook_k_input, self.attn.hook_k_input),
                fork(self.hook_v_input, self.attn.hook_v_input),
            )
        shared = fork(self.hook_attn_in, self.attn.hook_attn_in)
        return shared, shared, shared


class HookedTransformer(ModelWeights, TokenMethods, HookedRootModule):
    """GPT-style decoder (learned positions, pre-LayerNorm) that is a TransformerLens model.

    Architecture options (:class:`ModelConfig`): GPT-Neo's alternating global/local attention,
    unscaled scores, bias-free q/k/v and tied unembedding, or GPT-2's. Beyond the hook names it
    satisfies ``transformer_lens.model_protocol.TransformerLensModelWithWeights``:
    ``run_with_cache`` returns an ``ActivationCache``; weights in TL's names and shapes
    (:class:`~tinyinterp.models.tl_weights.ModelWeights`); ``to_tokens``/``to_str_tokens``/``generate``
    (:class:`~tinyinterp.models.tl_tokens.TokenMethods`); ``process_weights`` folds LayerNorm as TL does.
    TL's opt-in hooks (``set_use_attn_result``, ``set_use_split_qkv_input``, ``set_use_attn_in``,
    ``set_use_hook_mlp_in``) cost one flag check per block while off; the fast path is unchanged.
    """

    def __init__(self, cfg: ModelConfig, tokenizer=None):
        super().__init__()
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.name: str | None = None  # display name of an imported checkpoint (its hub name or folder)
        self.embed = Embed(cfg.d_vocab, cfg.d_model)
        self.pos_embed = PosEmbed(cfg.n_ctx, cfg.d_model)
        self.hook_tokens = HookPoint()  # (batch, pos) token ids; fires only with cfg.use_hook_tokens, as TL
        self.hook_embed = HookPoint()  # (batch, pos, d_model)
        self.hook_pos_embed = HookPoint()
        self.blocks = nn.ModuleList(TransformerBlock(cfg, layer) for layer in range(cfg.n_layers))
        self.ln_final = LayerNorm(cfg.d_model, cfg.layer_norm_eps, cfg.normalization_type == "LN")
        self.unembed = Unembed(cfg.d_model, cfg.d_vocab, bias=cfg.unembed_bias)
        if cfg.tie_embeddings:
            self.unembed.weight = self.embed.weight
        self.reset_parameters()
        self.setup()  # HookedRootModule: index every HookPoint by name

    def setup(self) -> None:
        """HookedRootModule's index of modules and HookPoints, plus TL 4.3's bridge-style aliases
        (:func:`hook_aliases`) in ``mod_dict``: ``run_with_hooks``/``add_hook``/``run_with_cache`` and the
        cache accept them. ``hook_dict`` keeps one name per HookPoint (ours), so caching all stores each once."""
        super().setup()
        self.hook_alias_dict = hook_aliases(self.cfg.n_layers)
        for alias, target in self.hook_alias_dict.items():
            self.mod_dict[alias] = self.hook_dict[target]

    def _canonical_names(self, names_filter):
        """``names_filter`` with aliases replaced by our names (strings and lists; functions see ours)."""
        if isinstance(names_filter, str):
            return self.hook_alias_dict.get(names_filter, names_filter)
        if isinstance(names_filter, (list, tuple)):
            return [self.hook_alias_dict.get(n, n) for n in names_filter]
        return names_filter

    def run_with_cache(self, *model_args, return_cache_object: bool = True, remove_batch_dim: bool = False, **kwargs):
        """Run and cache activations: ``(output, ActivationCache)`` (a plain dict with
        ``return_cache_object=False``). Accepts ``names_filter``, ``device``, ``remove_batch_dim``,
        ``incl_bwd`` as ``HookedRootModule.run_with_cache``, and every ``forward`` keyword
        (``stop_at_layer``, ``prepend_bos``, ``padding_side``, ``attention_mask``, ...); the input may be text."""
        from transformer_lens.ActivationCache import ActivationCache

        if "names_filter" in kwargs:
            kwargs["names_filter"] = self._canonical_names(kwargs["names_filter"])
        out, cache_dict = super().run_with_cache(*model_args, remove_batch_dim=remove_batch_dim, **kwargs)
        cache_dict = _AliasedCache(cache_dict, self.hook_alias_dict)
        if not return_cache_object:
            return out, cache_dict
        return out, ActivationCache(cache_dict, self, has_batch_dim=not remove_batch_dim)

    def to(self, *args, **kwargs):
        module = super().to(*args, **kwargs)
        param = next(self.parameters(), None)
        if param is not None:  # TL utilities read cfg.device / cfg.dtype
            self.cfg.device, self.cfg.dtype = str(param.device), param.dtype
        return module

    def tl_named_parameters(self):
        """``(name, tensor)`` in TL's names and shapes (``embed.W_E``, ``blocks.0.attn.W_Q`` ...), as the
        bridge's ``tl_named_parameters``: an iterator over :meth:`tl_state_dict` (copies)."""
        return iter(self.tl_state_dict().items())

    def enable_compatibility_mode(
        self,
        disable_warnings: bool = False,
        no_processing: bool = False,
        fold_ln: bool = True,
        center_writing_weights: bool = True,
        center_unembed: bool = True,
        fold_value_biases: bool = True,
        refactor_factored_attn_matrices: bool = False,
    ):
        """TL 4's bridge call, which its demos make on every model: HookedTransformer's load-time weight
        processing — here :meth:`process_weights` with the same keywords (none with ``no_processing``).
        Our hook names are already the legacy ones, so there is nothing else to switch on.
        Idempotent: a second call leaves the weights as they are (to float error). Returns the model."""
        if not no_processing:
            self.process_weights(
                fold_ln=fold_ln, center_writing_weights=center_writing_weights, center_unembed=center_unembed,
                fold_value_biases=fold_value_biases, refactor_factored_attn_matrices=refactor_factored_attn_matrices,
            )
        self.compatibility_mode = True
        return self

    def input_to_embed(self, input, prepend_bos: bool | None = None, padding_side: str | None = None,
                       attention_mask: torch.Tensor | None = None):
        """TL's ``input_to_embed``: ``(residual entering block 0, tokens, None, attention_mask)``; feed the
        residual back with ``forward(residual, start_at_layer=0, tokens=tokens, attention_mask=...)``.
        The third element (TL's shortformer positions) is always ``None``: positions are in the residual."""
        tokens, mask = self._tokens_and_mask(input, prepend_bos, padding_side, attention_mask)
        resid = self.forward(tokens, stop_at_layer=0, attention_mask=mask)
        return resid, tokens, None, mask

    def loss_fn(self, logits: torch.Tensor, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None,
                per_token: bool = False) -> torch.Tensor:
        """TL's ``loss_fn``: next-token cross-entropy of ``logits`` on ``tokens`` (mean, or per token)."""
        from transformer_lens.utilities import lm_cross_entropy_loss

        return lm_cross_entropy_loss(logits, tokens, attention_mask=attention_mask, per_token=per_token)

    def set_use_attn_result(self, use_attn_result: bool) -> None:
        """Compute ``blocks.{l}.attn.hook_result`` (per-head writes to the residual stream)."""
        self.cfg.use_attn_result = use_attn_result

    def set_use_split_qkv_input(self, use_split_qkv_input: bool) -> None:
        """Give q, k and v of every head their own pre-``ln1`` residual copy:
        ``blocks.{l}.attn.hook_q_input|hook_k_input|hook_v_input`` (and the legacy
        ``blocks.{l}.hook_q_input`` …), (batch, pos, head, d_model). Exclusive with ``use_attn_in``."""
        if use_split_qkv_input and self.cfg.use_attn_in:
            raise TinyinterpError(
                "set_use_split_qkv_input: use_attn_in is on and the two are exclusive; call set_use_attn_in(False) first"
            )
        self.cfg.use_split_qkv_input = use_split_qkv_input

    def set_use_attn_in(self, use_attn_in: bool) -> None:
        """One per-head pre-``ln1`` residual copy shared by q, k and v: ``blocks.{l}.attn.hook_attn_in``
        (and ``blocks.{l}.hook_attn_in``), (batch, pos, head, d_model). Exclusive with split q/k/v input."""
        if use_attn_in and self.cfg.use_split_qkv_input:
            raise TinyinterpError(
                "set_use_attn_in: use_split_qkv_input is on and the two are exclusive; call set_use_split_qkv_input(False) first"
            )
        self.cfg.use_attn_in = use_attn_in

    def set_use_hook_mlp_in(self, use_hook_mlp_in: bool) -> None:
        """Fire ``blocks.{l}.hook_mlp_in`` (batch, pos, d_model): the MLP branch's input, before ``ln2``."""
        self.cfg.use_hook_mlp_in = use_hook_mlp_in

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
        input: torch.Tensor | str | list[str],
        return_type: str | None = "logits",
        loss_per_token: bool = False,
        prepend_bos: bool | None = None,
        padding_side: str | None = None,
        start_at_layer: int | None = None,
        tokens: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        stop_at_layer: int | None = None,
        past_kv_cache: KVCache | None = None,
        *,
        targets: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
    ):
        """Run the model on token ids (batch, pos) or (pos,), or on text (a string or a list of strings).

        The arguments are TL's ``HookedTransformer.forward``'s, in its order:

        * text is tokenized with ``to_tokens(input, prepend_bos, padding_side)``; a list of texts of
          different lengths is padded, and the padding is masked (below).
        * ``attention_mask`` (batch, pos), 1 = a real token. Without it, a token tensor gets a mask when
          ``padding_side`` (or the tokenizer's ``padding_side``) is ``"left"``: the leading
          ``<|endoftext|>`` pads are masked, except the last one when ``prepend_bos`` (our BOS is the pad
          token), as TL's ``utils.get_attention_mask``. With a mask, padding keys are never attended to
          and positions count real tokens only (TL's ``get_offset_position_ids``), so a left-padded row
          gives the same numbers as the row alone; the loss skips padding.
        * ``stop_at_layer=k`` returns the residual stream entering block ``k`` (``0`` = the embeddings
          only; negative counts from the end); ``start_at_layer=k`` takes that residual (batch, pos,
          d_model) as ``input`` and runs blocks ``k`` on (a loss then needs ``tokens=`` or ``targets=``).
          Blocks outside the range do not run or fire hooks.
        * ``return_type``: ``"logits"`` (batch, pos, d_vocab), ``"loss"`` (mean next-token cross-entropy
          in nats, per token (batch, pos - 1) with ``loss_per_token``; against ``targets`` when given),
          ``"both"`` (logits, loss), ``"predictions"`` (the most likely next token after each row's last
          real token, as text: a string for one row, else a list), or ``None``.
        * ``kv_cache`` / ``past_kv_cache`` (our :class:`KVCache`): the cache grows in place, positions
          continue from its length; an ``attention_mask`` given with it covers the new tokens (or all).
        """
        kv_cache = kv_cache if kv_cache is not None else past_kv_cache
        if start_at_layer is not None:
            if kv_cache is not None or not torch.is_tensor(input) or input.dim() != 3:
                raise TinyinterpError(
                    "forward(start_at_layer=...): pass the residual stream (batch, pos, d_model) as input, no kv_cache"
                )
            resid = input
            mask = None if attention_mask is None else self._normalise_mask(attention_mask.to(resid.device).bool())
            full_mask = mask
        else:
            tokens, mask = self._tokens_and_mask(input, prepend_bos, padding_side, attention_mask)
            past = len(kv_cache) if kv_cache is not None else 0
            B, T = tokens.shape
            if past + T > self.cfg.n_ctx:
                raise TinyinterpError(
                    f"sequence of {past + T} tokens exceeds the model's context of {self.cfg.n_ctx}; "
                    "shorten the prompt or generate fewer tokens"
                )
            full_mask = mask
            if kv_cache is not None:
                full_mask = self._extend_cache_mask(kv_cache, mask, B, past, T, tokens.device)
            if full_mask is None:
                positions = torch.arange(past, past + T, device=tokens.device)
                pos_embed = self.pos_embed(positions).expand(B, T, self.cfg.d_model)  # (batch, pos, d_model) as TL
            else:  # positions count real tokens only; padding gets a zero position embedding, as TL
                positions = (full_mask.cumsum(dim=1) - 1).clamp(min=0)[:, past:]
                pos_embed = self.pos_embed(positions) * full_mask[:, past:, None]
            if self.cfg.use_hook_tokens:
                tokens = self.hook_tokens(tokens)
            resid = self.hook_embed(self.embed(tokens)) + self.hook_pos_embed(pos_embed)
        for block in self.blocks[start_at_layer:stop_at_layer]:
            resid = block(resid, kv_cache, full_mask)
        if stop_at_layer is not None:
            return resid
        resid = self.ln_final(resid)
        if return_type is None:  # nothing reads the logits: skip the unembedding (most of the work at d_vocab 50,257)
            return None
        logits = self.unembed(resid)
        if return_type == "logits":
            return logits
        if return_type == "predictions":
            return self._predictions(logits, mask, isinstance(input, str))
        if return_type not in ("loss", "both"):
            raise TinyinterpError(f"return_type must be 'logits', 'loss', 'both', 'predictions' or None, got {return_type!r}")
        loss = self._loss(logits, tokens, targets, mask, loss_per_token)
        return loss if return_type == "loss" else (logits, loss)

    # --- forward's helpers ------------------------------------------------------------------------

    def _tokens_and_mask(self, input, prepend_bos, padding_side, attention_mask) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(tokens (batch, pos), bool mask (batch, pos) or None when every token is real)."""
        if isinstance(input, str) or (isinstance(input, (list, tuple)) and input and isinstance(input[0], str)):
            tokens, mask = self._tokenize(input, prepend_bos=prepend_bos, padding_side=padding_side)
            if attention_mask is None:
                return tokens, mask
        elif torch.is_tensor(input) or isinstance(input, (list, tuple)):
            tokens = torch.as_tensor(input, dtype=torch.long) if not torch.is_tensor(input) else input
            if tokens.dim() == 1:
                tokens = tokens.unsqueeze(0)
            if tokens.dim() != 2:
                raise TinyinterpError(f"forward: tokens must be (batch, pos) or (pos,), got shape {tuple(tokens.shape)}")
        else:
            raise TinyinterpError(f"forward: input must be token ids, a string or a list of strings, got {type(input).__name__}")
        if attention_mask is not None:
            attention_mask = torch.as_tensor(attention_mask, device=tokens.device)
            if attention_mask.dim() == 1:
                attention_mask = attention_mask.unsqueeze(0)
            return tokens, self._normalise_mask(attention_mask.bool())
        if self._padding_side(padding_side) == "left" and self.tokenizer is not None:
            return tokens, self._normalise_mask(self._left_padding_mask(tokens, prepend_bos))
        return tokens, None

    def _left_padding_mask(self, tokens: torch.Tensor, prepend_bos: bool | None) -> torch.Tensor:
        """TL's ``get_attention_mask`` for left padding: leading pads masked; our pad is our BOS, so with
        ``prepend_bos`` the last leading pad is the BOS and stays."""
        pad = self.tokenizer.eot_id
        leading = (tokens != pad).cumsum(dim=1) == 0
        mask = ~leading
        bos = self.cfg.default_prepend_bos if prepend_bos is None else prepend_bos
        if bos:
            last_pad = (leading.sum(dim=1) - 1).clamp(min=0)
            mask[torch.arange(tokens.shape[0], device=tokens.device), last_pad] = True
        return mask

    @staticmethod
    def _normalise_mask(mask: torch.Tensor) -> torch.Tensor | None:
        # An all-ones mask changes nothing: drop it so the fast causal kernels run.
        return None if bool(mask.all()) else mask

    @staticmethod
    def _extend_cache_mask(kv_cache: KVCache, mask, B: int, past: int, T: int, device) -> torch.Tensor | None:
        """The mask over every cached token plus these ``T``; stored back on the cache."""
        if mask is None and kv_cache.attention_mask is None:
            return None
        old = kv_cache.attention_mask
        if old is None:
            old = torch.ones(B, past, dtype=torch.bool, device=device)
        if mask is None:
            mask = torch.ones(B, T, dtype=torch.bool, device=device)
        elif mask.shape[1] == past + T:  # a mask over the whole sequence so far
            mask = mask[:, past:]
        elif mask.shape[1] != T:
            raise TinyinterpError(f"attention_mask covers {mask.shape[1]} tokens; expected {T} (new) or {past + T} (all)")
        kv_cache.attention_mask = torch.cat([old, mask], dim=1)
        return kv_cache.attention_mask

    def _loss(self, logits, tokens, targets, mask, per_token: bool) -> torch.Tensor:
        if targets is not None:
            loss = F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none" if per_token else "mean"
            )
            return loss.view(targets.shape) if per_token else loss
        if tokens is None:
            raise TinyinterpError("a loss needs the tokens: pass tokens= (or targets=) with start_at_layer")
        if mask is not None and mask.shape == tokens.shape:
            return self.loss_fn(logits, tokens, attention_mask=mask, per_token=per_token)
        loss = F.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1), reduction="none" if per_token else "mean"
        )
        return loss.view(tokens.shape[0], -1) if per_token else loss  # (batch, pos - 1), as TL

    def _predictions(self, logits, mask, single: bool):
        if mask is None:
            last = torch.full((logits.shape[0],), logits.shape[1] - 1, device=logits.device)
        else:  # the last real token of each row (right padding leaves pads after it)
            idx = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
            last = torch.where(mask, idx, torch.zeros_like(idx)).max(dim=1).values
        ids = logits[torch.arange(logits.shape[0], device=logits.device), last].argmax(dim=-1)
        texts = [self._require_tokenizer().decode([int(i)]) for i in ids]
        return texts[0] if single else texts
