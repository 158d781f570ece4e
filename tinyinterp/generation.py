"""Batched sampling from any hooked model: greedy, temperature, top-k and top-p, with a KV cache.

Our own models reuse keys/values through :class:`tinyinterp.model.KVCache`, so each new token
costs one position of compute; models without a cache (external bridges) re-run the full
prefix each step. Sequences stop at ``<|endoftext|>`` (or ``max_new_tokens``).

    >>> from tinyinterp import load
    >>> model = load("runs/demo")
    >>> generate(model, ["Once upon a time"], SamplingConfig(max_new_tokens=50, seed=0))[0]
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

import torch

from tinyinterp.errors import TinyinterpError

log = logging.getLogger(__name__)


@dataclass
class SamplingConfig:
    max_new_tokens: int = 200
    temperature: float = 1.0
    """0 means greedy decoding."""
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None
    use_kv_cache: bool = True
    stop_at_eot: bool = True

    def __post_init__(self) -> None:
        if self.max_new_tokens < 0:
            raise TinyinterpError(f"max_new_tokens must be >= 0, got {self.max_new_tokens}")
        if not (isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature) and self.temperature >= 0):
            raise TinyinterpError(f"--temperature must be a finite number >= 0 (0 = greedy), got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise TinyinterpError(f"top_k must be >= 1, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:  # also refuses nan
            raise TinyinterpError(f"top_p must be in (0, 1], got {self.top_p}")

    def to_dict(self) -> dict:
        return asdict(self)


def sample_next(logits: torch.Tensor, cfg: SamplingConfig, generator: torch.Generator | None) -> torch.Tensor:
    """Pick one token per row of ``logits`` (batch, vocab)."""
    if cfg.temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / cfg.temperature
    if cfg.top_k is not None and cfg.top_k < logits.shape[-1]:
        kth = torch.topk(logits, cfg.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if cfg.top_p is not None and cfg.top_p < 1:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = torch.softmax(sorted_logits, dim=-1)
        # Drop a token when the mass before it already reaches top_p (the first token always stays).
        drop = probs.cumsum(dim=-1) - probs >= cfg.top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _model_device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError):
        return torch.device("cpu")


@torch.no_grad()
def generate_tokens(model, prompts: list[list[int]], cfg: SamplingConfig, eot_id: int | None = None) -> list[list[int]]:
    """Continue each prompt (a list of token ids); returns only the new tokens, EOT excluded."""
    if not prompts:
        return []
    if any(len(p) == 0 for p in prompts):
        raise TinyinterpError("every prompt must have at least one token")
    n_ctx = model.cfg.n_ctx
    longest = max(len(p) for p in prompts)
    if longest > n_ctx:
        raise TinyinterpError(f"prompt of {longest} tokens is longer than the model's context of {n_ctx} tokens")
    max_new = min(cfg.max_new_tokens, n_ctx - longest)
    if max_new < cfg.max_new_tokens:
        log.warning(
            "max_new_tokens capped from %d to %d: the longest prompt has %d tokens of the model's %d-token context",
            cfg.max_new_tokens, max_new, longest, n_ctx,
        )
    device = _model_device(model)
    generator = None
    if cfg.seed is not None:
        generator = torch.Generator(device=device).manual_seed(cfg.seed)

    # Prompts of different lengths: run each length group as its own batch, so no padding
    # enters attention and outputs do not depend on what else is in the batch.
    outputs: list[list[int]] = [[] for _ in prompts]
    by_length: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        by_length.setdefault(len(p), []).append(i)
    for length in sorted(by_length):
        rows = by_length[length]
        tokens = torch.tensor([prompts[i] for i in rows], dtype=torch.long, device=device)
        for row, new in zip(rows, _generate_batch(model, tokens, cfg, max_new, eot_id, generator)):
            outputs[row] = new
    return outputs


def _generate_batch(model, tokens, cfg, max_new, eot_id, generator) -> list[list[int]]:
    use_cache = cfg.use_kv_cache and hasattr(model, "new_kv_cache")
    kv_cache = model.new_kv_cache() if use_cache else None
    batch = tokens.shape[0]
    new_tokens = torch.empty(batch, 0, dtype=torch.long, device=tokens.device)
    alive = torch.ones(batch, dtype=torch.bool, device=tokens.device)
    step_input = tokens
    for _ in range(max_new):
        if use_cache:
            logits = model(step_input, kv_cache=kv_cache)[:, -1]
        else:
            logits = model(torch.cat([tokens, new_tokens], dim=1))[:, -1]
        nxt = sample_next(logits, cfg, generator)
        if eot_id is not None:
            nxt = torch.where(alive, nxt, torch.full_like(nxt, eot_id))
        new_tokens = torch.cat([new_tokens, nxt[:, None]], dim=1)
        step_input = nxt[:, None]
        if cfg.stop_at_eot and eot_id is not None:
            alive &= nxt != eot_id
            if not alive.any():
                break
    result = []
    for row in new_tokens.tolist():
        if cfg.stop_at_eot and eot_id is not None and eot_id in row:
            row = row[: row.index(eot_id)]
        result.append(row)
    return result


def generate(model, prompts: list[str], cfg: SamplingConfig | None = None, tokenizer=None) -> list[str]:
    """Continue each text prompt and return the generated continuations as text."""
    cfg = cfg or SamplingConfig()
    tokenizer = tokenizer or getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise TinyinterpError("model has no tokenizer; pass tokenizer=...")
    encoded = tokenizer.encode_batch(list(prompts))
    new = generate_tokens(model, encoded, cfg, eot_id=tokenizer.eot_id)
    return [tokenizer.decode(ids) for ids in new]
