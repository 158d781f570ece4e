"""Activations for a dictionary: streamed from the model with a shuffle buffer, or read from a cache.

:class:`ActivationStream` cuts the corpus into per-document windows (the neuron index's windows),
visits them in a seeded random order, runs the model on a batch of windows with hooks on the
dictionary's input and output hooks (stopping the forward after the last block it needs), and keeps
the real (non-padding) token rows in a buffer of fixed size. Batches are drawn at random from the
buffer and the drawn rows refilled from new windows, so consecutive batches mix many documents and
memory stays ``buffer_tokens × (d_in + d_out)`` floats. Under ``torchrun`` each rank takes every
``world``-th window.

:func:`cache_activations` writes rows once to a memory-mapped ``float32`` file; :class:`CachedActivations`
reads random batches from it, so a hyperparameter sweep does not rerun the model.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from tinyinterp.io.atomic import atomic_write_text
from tinyinterp.dictionaries.config import DictionaryConfig, DictionaryError
from tinyinterp.interp.activations import iter_activations, model_device, run_activations
from tinyinterp.interp.inputs import document_windows

log = logging.getLogger(__name__)

CACHE_META = "activations.json"
CACHE_DATA = "activations.f32"


def check_hook(model, hook: str, what: str = "--hook") -> None:
    if hook not in model.hook_dict:
        near = sorted(h for h in model.hook_dict if h.split(".")[-1] == hook.split(".")[-1])[:4]
        hint = f"; e.g. {', '.join(near)}" if near else "; see `model.hook_dict` for the names"
        raise DictionaryError(f"{what} {hook!r} is not a hook of this model{hint}")


def _flat(act: torch.Tensor) -> torch.Tensor:
    """(batch, pos, ...) -> (batch, pos, d): attention hooks (batch, pos, head, d_head) flatten heads."""
    return act.flatten(2) if act.dim() > 3 else act


def hook_widths(model, hooks: list[str]) -> list[int]:
    """The flattened width of each hook's activation (one 2-token forward through the activation pass)."""
    for h in hooks:
        check_hook(model, h)
    got = run_activations(model, torch.zeros(1, 2, dtype=torch.long, device=model_device(model)), list(dict.fromkeys(hooks)))
    return [_flat(got[h]).shape[-1] for h in hooks]


def stream_windows(model, corpus, seq_len: int, seed: int, rank: int = 0, world: int = 1) -> np.ndarray:
    """The corpus windows one rank streams, in the seed's order (DDP ranks take disjoint strides)."""
    windows = document_windows(corpus, min(seq_len, model.cfg.n_ctx))
    if len(windows) == 0:
        raise DictionaryError(f"corpus {getattr(corpus, 'path', '')} has no tokens to train on")
    return windows[np.random.default_rng(seed).permutation(len(windows))][rank::world]


def stream_generator(seed: int, rank: int = 0) -> torch.Generator:
    """The shuffle buffer's draws: one generator per (seed, rank)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + rank)


class ActivationStream:
    """Random batches of (x, y) rows (x at ``hook_in``, y at ``hook_out``) from model forward passes."""

    def __init__(self, model, corpus, cfg: DictionaryConfig, seq_len: int, model_batch: int, buffer_tokens: int,
                 seed: int = 0, rank: int = 0, world: int = 1, start_window: int = 0):
        check_hook(model, cfg.hook_in, "hook_in")
        check_hook(model, cfg.hook_out, "hook_out")
        self.model, self.corpus, self.cfg = model, corpus, cfg
        self.model_batch, self.buffer_tokens = model_batch, buffer_tokens
        self.windows = stream_windows(model, corpus, seq_len, seed, rank, world)
        self.position = start_window
        """Windows consumed so far (saved in checkpoints: a resumed run continues with the next one)."""
        self.generator = stream_generator(seed, rank)

    def _next_rows(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows of the next ``model_batch`` windows (wrapping around the corpus: an epoch boundary)."""
        n = len(self.windows)
        idx = [(self.position + i) % n for i in range(self.model_batch)]
        self.position += self.model_batch
        hooks = list(dict.fromkeys([self.cfg.hook_in, self.cfg.hook_out]))
        batch = next(iter_activations(self.model, self.corpus, self.windows[idx], hooks, batch_size=len(idx)))
        x = batch.real_rows(_flat(batch.acts[self.cfg.hook_in])).float().cpu()
        if self.cfg.hook_out == self.cfg.hook_in:  # an SAE: one tensor serves as input and target
            return x, x
        y = batch.real_rows(_flat(batch.acts[self.cfg.hook_out])).float().cpu()
        return x, y

    def batches(self, batch_tokens: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless (x, y) batches of ``batch_tokens`` rows drawn at random from the shuffle buffer."""
        same = self.cfg.hook_out == self.cfg.hook_in
        return shuffled_batches(self._next_rows, self.buffer_tokens, batch_tokens, self.generator, same)


def shuffled_batches(next_rows: Callable[[], tuple[torch.Tensor, torch.Tensor]], buffer_tokens: int,
                     batch_tokens: int, generator: torch.Generator,
                     same: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The shuffle buffer every activation stream draws from: endless (x, y) batches of ``batch_tokens``
    rows picked at random from a pool of at least ``buffer_tokens`` rows filled by ``next_rows()``.

    The drawn slots are refilled in place with fresh rows (rows of a model batch that did not fit wait
    for the next refill), so a step costs O(batch), not a copy of the whole buffer. ``same``: x is the
    target too (an SAE), and one tensor serves as both. Rows may have any trailing shape (a transcoder
    set keeps (rows, layer, d)).
    """

    def fill(x: torch.Tensor, y: torch.Tensor, need: int) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys, have = [x], [y], len(x)
        while have < need:
            nx, ny = next_rows()
            xs.append(nx), ys.append(ny)
            have += len(nx)
        return torch.cat(xs), torch.cat(ys)

    bx, by = fill(*next_rows(), buffer_tokens)
    by = bx if same else by
    pending = (bx[:0], by[:0])
    while True:
        take = torch.randperm(len(bx), generator=generator)[:batch_tokens]
        yield (bx[take],) * 2 if same else (bx[take], by[take])
        px, py = fill(*pending, len(take))
        bx[take] = px[: len(take)]
        if not same:
            by[take] = py[: len(take)]
        pending = (px[len(take):], py[len(take):])


def cache_activations(stream: ActivationStream, out_dir: Path, n_tokens: int, progress: bool = True) -> Path:
    """Write ``n_tokens`` shuffled (x, y) rows to ``out_dir`` as one memory-mapped float32 array."""
    from tqdm import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    d = stream.cfg.d_in + (stream.cfg.d_out if stream.cfg.kind == "transcoder" else 0)
    data = np.lib.format.open_memmap(out_dir / (CACHE_DATA + ".npy.partial"), mode="w+", dtype=np.float32,
                                     shape=(n_tokens, d))
    written = 0
    with tqdm(total=n_tokens, desc="caching activations", unit="tok", disable=not progress) as bar:
        for x, y in stream.batches(min(4096, n_tokens)):
            rows = torch.cat([x, y], dim=1) if stream.cfg.kind == "transcoder" else x
            n = min(len(rows), n_tokens - written)
            data[written: written + n] = rows[:n].numpy()
            written += n
            bar.update(n)
            if written >= n_tokens:
                break
    data.flush()
    del data
    (out_dir / (CACHE_DATA + ".npy.partial")).replace(out_dir / (CACHE_DATA + ".npy"))
    meta = {"hook_in": stream.cfg.hook_in, "hook_out": stream.cfg.hook_out, "d_in": stream.cfg.d_in,
            "d_out": stream.cfg.d_out, "kind": stream.cfg.kind, "n_tokens": n_tokens}
    atomic_write_text(out_dir / CACHE_META, json.dumps(meta, indent=2))
    return out_dir


class CachedActivations:
    """Random batches from a cache written by :func:`cache_activations` (same interface as the stream)."""

    def __init__(self, path: Path, cfg: DictionaryConfig, seed: int = 0, rank: int = 0, world: int = 1):
        path = Path(path)
        meta_path = path / CACHE_META
        if not meta_path.is_file():
            raise DictionaryError(f"--cache {path}: no {CACHE_META}; write it with `tinyinterp sae cache`")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        for key in ("hook_in", "hook_out", "d_in", "d_out", "kind"):
            if meta.get(key) != getattr(cfg, key):
                raise DictionaryError(f"--cache {path} holds {key}={meta.get(key)!r}, the dictionary needs {getattr(cfg, key)!r}")
        self.cfg = cfg
        self.data = np.load(path / (CACHE_DATA + ".npy"), mmap_mode="r")
        self.rows = np.arange(rank, len(self.data), world)
        self.rng = np.random.default_rng(seed + rank)
        self.position = 0

    def batches(self, batch_tokens: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            pick = np.sort(self.rng.choice(self.rows, size=min(batch_tokens, len(self.rows)), replace=False))
            rows = torch.from_numpy(np.ascontiguousarray(self.data[pick]))
            self.position += 1
            if self.cfg.kind == "transcoder":
                yield rows[:, : self.cfg.d_in], rows[:, self.cfg.d_in:]
            else:
                yield rows, rows
