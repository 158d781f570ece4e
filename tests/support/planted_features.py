"""Synthetic activations with known sparse structure, for testing dictionary training.

``PlantedSource`` yields (x, y) batches like the activation stream: each row activates ``k`` of ``n``
planted features with magnitudes in [0.5, 1.5]; x = h @ A + noise (unit-norm rows A), and y = x for
an SAE or y = h @ D (a planted sparse MLP's output, unit-norm rows D) for a transcoder.
"""

from __future__ import annotations

import torch


class PlantedSource:
    def __init__(self, d_in: int, d_out: int, n: int, k: int, seed: int, transcode: bool = False, noise: float = 0.01):
        g = torch.Generator().manual_seed(seed)
        self.A = torch.nn.functional.normalize(torch.randn(n, d_in, generator=g), dim=1)
        self.D = torch.nn.functional.normalize(torch.randn(n, d_out, generator=g), dim=1) if transcode else self.A
        self.n, self.k, self.noise, self.transcode = n, k, noise, transcode
        self.generator = g
        self.position = 0

    def sample(self, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y, _ = self.sample_with_hidden(rows)
        return x, y

    def sample_with_hidden(self, rows: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x, y, h): h (rows, n) are the planted units' activations."""
        g = self.generator
        idx = torch.rand(rows, self.n, generator=g).topk(self.k, dim=1).indices
        h = torch.zeros(rows, self.n).scatter_(1, idx, 0.5 + torch.rand(rows, self.k, generator=g))
        x = h @ self.A + self.noise * torch.randn(rows, self.A.shape[1], generator=g)
        y = h @ self.D if self.transcode else x
        return x, y, h

    def batches(self, batch_tokens: int):
        while True:
            self.position += 1
            yield self.sample(batch_tokens)


def recovered_fraction(planted: torch.Tensor, learned: torch.Tensor, threshold: float = 0.9) -> float:
    """Share of planted unit directions (n, d) matched by some learned row (m, d) at cosine >= threshold."""
    cos = torch.nn.functional.normalize(planted, dim=1) @ torch.nn.functional.normalize(learned, dim=1).T
    return float((cos.max(dim=1).values >= threshold).float().mean())


def matched_unit_correlation(source: PlantedSource, coder, rows: int = 4096) -> torch.Tensor:
    """For each planted unit: correlation of its activation with the learned feature whose decoder row matches it best."""
    x, _, h = source.sample_with_hidden(rows)
    feats = coder.encode(x).detach()
    cos = torch.nn.functional.normalize(source.D, dim=1) @ torch.nn.functional.normalize(coder.W_dec.detach(), dim=1).T
    best = cos.argmax(dim=1)
    f = feats[:, best]  # (rows, n)
    f, h = f - f.mean(0), h - h.mean(0)
    return (f * h).sum(0) / (f.norm(dim=0) * h.norm(dim=0)).clamp_min(1e-12)
