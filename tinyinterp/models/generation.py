"""The one sampler (greedy, temperature, top-k, top-p, frequency penalty, KV cache) and the one BOS policy.

**BOS policy** (:func:`prompt_ids`): a text prompt is encoded as ``<|endoftext|>`` followed by its
tokens. Our corpora join stories with ``<|endoftext|>`` (as the official TinyStories checkpoints,
whose BOS is their EOS), so in training every story start follows it: a prompt conditioned this way
is read exactly like a story start. ``prepend_bos=False`` gives the raw tokens. Every text entry
point uses it: :func:`generate` (the ``tinyinterp generate`` command, the app), evaluation
completions, probes, memorisation, and the model's own ``to_tokens`` / ``generate``.

**Sampler** (:func:`sample_tokens`): one loop, used by :func:`generate_tokens` (token-level, any
hooked model) and by ``HookedTransformer.generate`` (TL's signature). Our own models reuse
keys/values through :class:`tinyinterp.models.transformer.KVCache`, so each new token costs one position of
compute; models without a cache (external bridges) re-run the full prefix each step. Sequences
stop at ``<|endoftext|>`` (or ``max_new_tokens``).

    >>> from tinyinterp import load
    >>> model = load("runs/demo")
    >>> generate(model, ["Once upon a time"], SamplingConfig(max_new_tokens=50, seed=0))[0]
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Iterator

import torch
from tqdm.auto import tqdm

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
    new_tokens = sample_tokens(model, tokens, cfg, max_new, eot_id, generator)
    result = []
    for row in new_tokens.tolist():
        if cfg.stop_at_eot and eot_id is not None and eot_id in row:
            row = row[: row.index(eot_id)]
        result.append(row)
    return result


def sample_tokens(
    model,
    tokens: torch.Tensor,
    cfg: SamplingConfig,
    max_new: int,
    eot_id: int | None,
    generator: torch.Generator | None,
    attention_mask: torch.Tensor | None = None,
    freq_penalty: float = 0.0,
    progress: bool = False,
) -> torch.Tensor:
    """Continue ``tokens`` (batch, pos) by up to ``max_new`` tokens with :func:`sample_steps`; returns
    the new tokens (batch, n_new)."""
    steps = list(sample_steps(model, tokens, cfg, max_new, eot_id, generator, attention_mask, freq_penalty, progress))
    if not steps:
        return torch.empty(tokens.shape[0], 0, dtype=torch.long, device=tokens.device)
    return torch.stack(steps, dim=1)


def sample_steps(
    model,
    tokens: torch.Tensor,
    cfg: SamplingConfig,
    max_new: int,
    eot_id: int | None,
    generator: torch.Generator | None,
    attention_mask: torch.Tensor | None = None,
    freq_penalty: float = 0.0,
    progress: bool = False,
) -> Iterator[torch.Tensor]:
    """THE sampling loop: yield the next token of every row (batch,), up to ``max_new`` times.

    With ``cfg.stop_at_eot`` a row that produced ``eot_id`` gets ``eot_id`` from then on and the loop
    ends when every row has. ``attention_mask`` (batch, pos), True = real token, marks padding (our
    models only); ``freq_penalty`` subtracts penalty x count of each token so far."""
    use_cache = cfg.use_kv_cache and hasattr(model, "new_kv_cache")
    kv_cache = model.new_kv_cache() if use_cache else None
    batch = tokens.shape[0]
    new_tokens = torch.empty(batch, 0, dtype=torch.long, device=tokens.device)
    alive = torch.ones(batch, dtype=torch.bool, device=tokens.device)
    real = attention_mask
    step_input = tokens
    for _ in tqdm(range(max_new), disable=not progress, desc="generate"):
        mask_kw = {}
        if use_cache:
            if real is not None and step_input is tokens:
                mask_kw = {"attention_mask": real}  # later steps: the cache remembers it
            logits = model(step_input, kv_cache=kv_cache, **mask_kw)[:, -1]
        else:
            if real is not None:
                mask_kw = {"attention_mask": torch.cat([real, torch.ones_like(new_tokens, dtype=torch.bool)], dim=1)}
            logits = model(torch.cat([tokens, new_tokens], dim=1), **mask_kw)[:, -1]
        if freq_penalty:
            seen = torch.cat([tokens, new_tokens], dim=1)
            weight = torch.ones_like(seen, dtype=logits.dtype)
            if real is not None:  # padding is not part of the text
                weight[:, : real.shape[1]] *= real.to(logits.dtype)
            logits = logits - freq_penalty * torch.zeros_like(logits).scatter_add_(1, seen, weight)
        nxt = sample_next(logits, cfg, generator)
        if eot_id is not None:
            nxt = torch.where(alive, nxt, torch.full_like(nxt, eot_id))
        new_tokens = torch.cat([new_tokens, nxt[:, None]], dim=1)
        step_input = nxt[:, None]
        yield nxt
        if cfg.stop_at_eot and eot_id is not None:
            alive &= nxt != eot_id
            if not alive.any():
                break


def prompt_ids(tokenizer, text: str, prepend_bos: bool = True, max_len: int | None = None) -> list[int]:
    """THE BOS policy (see the module docstring): ``<|endoftext|>`` + the tokens of ``text``, unless
    ``prepend_bos=False``. ``max_len``: keep the BOS and the last ``max_len - 1`` tokens of the text."""
    bos = [tokenizer.eot_id] if prepend_bos else []
    ids = tokenizer.encode(text)
    if max_len is not None:
        keep = max(0, max_len - len(bos))
        ids = ids[len(ids) - keep:] if len(ids) > keep else ids
    return bos + ids


def generate(model, prompts: list[str], cfg: SamplingConfig | None = None, tokenizer=None,
             prepend_bos: bool = True) -> list[str]:
    """Continue each text prompt (encoded by :func:`prompt_ids`: ``<|endoftext|>`` first unless
    ``prepend_bos=False``) and return the generated continuations as text."""
    cfg = cfg or SamplingConfig()
    tokenizer = tokenizer or getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise TinyinterpError("model has no tokenizer; pass tokenizer=...")
    encoded = [prompt_ids(tokenizer, p, prepend_bos) for p in prompts]
    new = generate_tokens(model, encoded, cfg, eot_id=tokenizer.eot_id)
    return [tokenizer.decode(ids) for ids in new]
