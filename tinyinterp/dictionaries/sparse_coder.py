"""A TopK sparse dictionary (SAE or transcoder) as a torch module, in SAELens's parameter names.

``encode(x) = TopK(relu((x - b_dec·[sae]) @ W_enc + b_enc))`` keeps the ``k`` largest
pre-activations per token (``activation="relu"``: every positive one, TinyModel's sparse MLPs;
``apply_b_dec_to_input`` says whether ``b_dec`` is subtracted); ``decode(f) = f @ W_dec + b_dec``. The rows of ``W_dec`` are kept at unit
norm while training (so a feature's activation is its size) and the gradient parallel to them is
removed first (Gao et al. 2024, Bricken et al. 2023).

    >>> coder = SparseCoder(DictionaryConfig("sae", "blocks.1.hook_resid_post", "blocks.1.hook_resid_post", 64, 64, 512, 8))
    >>> coder(torch.randn(10, 64)).shape
    torch.Size([10, 64])
"""

from __future__ import annotations

import torch
from torch import nn

from tinyinterp.dictionaries.config import DictionaryConfig
from tinyinterp.dictionaries.sparse_ops import embedding_decode

PARAMETERS = ("W_enc", "b_enc", "W_dec", "b_dec")


class SparseCoder(nn.Module):
    def __init__(self, cfg: DictionaryConfig, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.cfg = cfg
        self.W_enc = nn.Parameter(torch.zeros(cfg.d_in, cfg.d_sae, dtype=dtype))
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae, dtype=dtype))
        self.W_dec = nn.Parameter(torch.zeros(cfg.d_sae, cfg.d_out, dtype=dtype))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_out, dtype=dtype))

    @property
    def applies_b_dec_to_input(self) -> bool:
        """An SAE centres its input on the decoder bias (SAELens's ``apply_b_dec_to_input``)."""
        return bool(self.cfg.apply_b_dec_to_input)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Unit-norm random decoder rows; the encoder starts as the decoder's transpose (SAE) or a scaled copy."""
        with torch.no_grad():
            W = torch.randn(self.cfg.d_sae, self.cfg.d_out, generator=generator, dtype=self.W_dec.dtype)
            self.W_dec.copy_(W / W.norm(dim=1, keepdim=True))
            if self.cfg.d_in == self.cfg.d_out:
                self.W_enc.copy_(self.W_dec.T)
            else:
                E = torch.randn(self.cfg.d_in, self.cfg.d_sae, generator=generator, dtype=self.W_enc.dtype)
                self.W_enc.copy_(E / E.norm(dim=0, keepdim=True))
            self.b_enc.zero_()
            self.b_dec.zero_()

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """(..., d_in) -> (..., d_sae): the encoder's output before TopK."""
        if self.applies_b_dec_to_input:
            x = x - self.b_dec
        return torch.relu(x @ self.W_enc + self.b_enc)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(..., d_in) -> (..., d_sae) feature activations, at most ``k`` non-zero per token."""
        pre = self.pre_activations(x)
        if self.cfg.activation == "relu":
            return pre
        values, indices = pre.topk(self.cfg.k, dim=-1, sorted=False)
        return torch.zeros_like(pre).scatter_(-1, indices, values)

    def encode_topk(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(values, indices, pre-activations): the sparse form training and the feature index use.

        A ReLU dictionary's k is its width, so this form holds every feature (exact, not sparse)."""
        pre = self.pre_activations(x)
        values, indices = pre.topk(self.cfg.k, dim=-1, sorted=False)
        return values, indices, pre

    def decode(self, features: torch.Tensor) -> torch.Tensor:
        return features @ self.W_dec + self.b_dec

    def decode_topk(self, values: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """Decode the sparse form without building the dense (..., d_sae) tensor."""
        return embedding_decode(self.W_dec, values, indices) + self.b_dec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(torch.finfo(self.W_dec.dtype).eps))

    @torch.no_grad()
    def remove_parallel_gradient(self) -> None:
        """Drop the part of W_dec's gradient that would only change the (renormalised) row norms."""
        if self.W_dec.grad is None:
            return
        parallel = (self.W_dec.grad * self.W_dec).sum(dim=1, keepdim=True)
        self.W_dec.grad.sub_(parallel * self.W_dec)

    @torch.no_grad()
    def fold_scales(self, input_scale: float, output_scale: float) -> None:
        """Make a coder trained on ``x * input_scale`` → ``y * output_scale`` act on raw x and y.

        With x' = s_in·x: (x' − b)·W = (x − b/s_in)·(s_in·W); decoding divides by s_out. For an SAE
        s_in = s_out, so b_dec/s is both the input centre and the output bias.
        """
        self.W_enc.mul_(input_scale)
        self.W_dec.div_(output_scale)
        self.b_dec.div_(output_scale)
        self.cfg.input_scale, self.cfg.output_scale = input_scale, output_scale

    def tensors(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name).detach().contiguous() for name in PARAMETERS}
