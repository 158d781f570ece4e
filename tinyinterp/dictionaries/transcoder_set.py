"""Train one transcoder per layer from ONE activation stream: a transcoder set for attribution graphs.

A set is a folder with one dictionary per layer, ``DIR/layer_{l:02d}/`` (names:
:func:`tinyinterp.runs.layout.transcoder_layer_name`), each an ordinary dictionary (SAELens layout,
``train_log.jsonl``, its own ``checkpoint/``). Training them one by one would run the model once per
layer; here every forward pass captures all layers' ``ln2.hook_normalized`` / ``hook_mlp_out`` at
once (:class:`MultiHookStream`: one shuffle buffer of (rows, layer, d) arrays, the same shuffled
rows for every layer), and each batch is handed to every layer's
:class:`~tinyinterp.dictionaries.training.DictionaryTrainer` in turn. Each trainer keeps its own
optimiser, checkpoints, resume and DDP all-reduces exactly as when it trains alone; a killed set
resumes every layer from its checkpoint and the stream from the earliest saved position.

    >>> coders = train_transcoder_set(model, corpus, width=512, k=16, train=TrainConfig(tokens=100_000), out_dir=d)
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path

import torch

from tinyinterp.dictionaries.activations import check_hook, hook_widths, shuffled_batches, stream_generator, stream_windows
from tinyinterp.dictionaries.config import DictionaryConfig, DictionaryError, TrainConfig, transcoder_hooks
from tinyinterp.dictionaries.training import DictionaryTrainer, _world
from tinyinterp.interp.activations import iter_activations
from tinyinterp.runs.layout import transcoder_layer_name

log = logging.getLogger(__name__)


class MultiHookStream:
    """Like :class:`~tinyinterp.dictionaries.activations.ActivationStream`, for several (x, y) hook pairs at once."""

    def __init__(self, model, corpus, cfgs: list[DictionaryConfig], seq_len: int, model_batch: int, buffer_tokens: int,
                 seed: int = 0, rank: int = 0, world: int = 1):
        if len({(c.d_in, c.d_out) for c in cfgs}) != 1:
            raise DictionaryError("one stream feeds dictionaries of one shape; these differ in width")
        for c in cfgs:
            check_hook(model, c.hook_in, "hook_in")
            check_hook(model, c.hook_out, "hook_out")
        self.model, self.corpus, self.cfgs = model, corpus, cfgs
        self.model_batch, self.buffer_tokens = model_batch, buffer_tokens
        self.windows = stream_windows(model, corpus, seq_len, seed, rank, world)
        self.position = 0
        """Windows consumed so far (each trainer's checkpoint saves it)."""
        self.generator = stream_generator(seed, rank)
        self.hooks = list(dict.fromkeys(h for c in cfgs for h in (c.hook_in, c.hook_out)))

    def _next_rows(self) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(self.windows)
        idx = [(self.position + i) % n for i in range(self.model_batch)]
        self.position += self.model_batch
        batch = next(iter_activations(self.model, self.corpus, self.windows[idx], self.hooks, batch_size=len(idx)))
        x = torch.stack([batch.real_rows(batch.acts[c.hook_in]).float().cpu() for c in self.cfgs], dim=1)
        y = torch.stack([batch.real_rows(batch.acts[c.hook_out]).float().cpu() for c in self.cfgs], dim=1)
        return x, y  # (rows, n_dictionaries, d)

    def batches(self, batch_tokens: int) -> Iterator[list[tuple[torch.Tensor, torch.Tensor]]]:
        """Endless lists of one (x, y) batch per dictionary, all of the same token rows (the one shuffle
        buffer of :func:`~tinyinterp.dictionaries.activations.shuffled_batches`, rows (tokens, layer, d))."""
        for x, y in shuffled_batches(self._next_rows, self.buffer_tokens, batch_tokens, self.generator):
            yield [(x[:, i], y[:, i]) for i in range(len(self.cfgs))]


def transcoder_configs(model, width: int | None, k: int, layers: list[int] | None = None,
                       model_name: str = "") -> list[DictionaryConfig]:
    """One transcoder config per layer (default every layer), width default 8 × d_model."""
    layers = list(range(model.cfg.n_layers)) if layers is None else layers
    hook_in, hook_out = transcoder_hooks(layers[0])
    d_in, d_out = hook_widths(model, [hook_in, hook_out])
    name = getattr(model, "name", "") or model_name
    return [DictionaryConfig("transcoder", *transcoder_hooks(layer), d_in, d_out, width or 8 * d_in, k, model_name=name)
            for layer in layers]


def train_transcoder_set(model, corpus, width: int | None, k: int, train: TrainConfig, out_dir: Path,
                         layers: list[int] | None = None, progress: bool = True, log_every: int = 20,
                         model_name: str = "") -> dict:
    """Train a transcoder of every layer's MLP (or ``layers``) into ``out_dir/layer_XX/``; {layer: SparseCoder}."""
    from tqdm import tqdm

    rank, world = _world()
    layers = list(range(model.cfg.n_layers)) if layers is None else layers
    cfgs = transcoder_configs(model, width, k, layers, model_name)
    stream = MultiHookStream(model, corpus, cfgs, train.seq_len, train.model_batch, train.buffer_tokens,
                             seed=train.seed, rank=rank, world=world)
    out_dir = Path(out_dir)
    trainers, positions = [], []
    for layer, cfg in zip(layers, cfgs):
        stream.position = 0
        trainer = DictionaryTrainer(cfg, dataclasses.replace(train, seed=train.seed + layer),
                                    out_dir / transcoder_layer_name(layer), source=stream)
        trainer.start()  # resumes: sets stream.position to what this layer's checkpoint saved
        trainers.append(trainer)
        positions.append(stream.position)
    stream.position = min(positions)  # a kill between two layers' checkpoints: replay from the earliest
    done_tokens = min(t.tokens for t in trainers)
    bar = tqdm(total=train.tokens, initial=min(done_tokens, train.tokens), unit="tok",
               desc=f"training {len(trainers)} transcoders", disable=not progress or rank != 0)
    stats = [None] * len(trainers)
    try:
        batches = stream.batches(train.batch_tokens)
        while not all(t.done for t in trainers):
            rows = next(batches)
            for i, (trainer, (x, y)) in enumerate(zip(trainers, rows)):
                if not trainer.done:
                    stats[i] = trainer.train_step(x, y)
                    trainer.after_step(stats[i], log_every)
            bar.update(len(rows[0][0]) * world)
            bar.set_postfix(fvu=" ".join(f"{s.fvu:.2f}" for s in stats if s is not None))
    finally:
        bar.close()
    coders = {layer: trainer.finish(s) for layer, trainer, s in zip(layers, trainers, stats)}
    log.info("trained %d transcoders into %s", len(coders), out_dir)
    return coders
