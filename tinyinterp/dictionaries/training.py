"""Train a TopK dictionary on a model's activations (Gao et al. 2024's recipe), resumable and DDP-ready.

Per step: a batch of (x, y) rows (normalised to unit mean norm, the scales measured on the first
buffer), TopK encode/decode, loss = FVU + aux_coef · AuxK, where FVU is the squared error over the
batch's total variance and AuxK reconstructs the remaining error from the ``aux_k`` largest
pre-activations of the *dead* features (not fired for ``dead_after_tokens`` tokens) — what keeps
features from dying. Before each Adam step the gradient parallel to the decoder rows is removed;
after it the rows are renormalised to unit norm.

Every ``checkpoint_every`` steps ``out_dir/checkpoint/`` is replaced atomically (weights,
``optimizer.pt``, ``state.json`` with the step, tokens, feature ages, scales and the data position);
a killed run started again with the same command resumes there. At the end the scales are folded
into the weights and the dictionary is saved in SAELens's layout (:mod:`.formats`), with
``train_log.jsonl`` (one line per logged step) beside it.

Under ``torchrun --nproc_per_node=N`` the same command trains with DDP: each rank reads its own
windows, gradients and feature-firing counts are all-reduced, and only rank 0 writes.

    >>> coder = train_dictionary(model, corpus, DictionaryConfig("sae", h, h, 64, 64, 512, 16), TrainConfig(), out)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from tinyinterp.io.atomic import atomic_write_text
from tinyinterp.runs.layout import OPTIMIZER_FILE, STATE_FILE
from tinyinterp.dictionaries.activations import ActivationStream, CachedActivations
from tinyinterp.dictionaries.config import DictionaryConfig, DictionaryError, TrainConfig
from tinyinterp.dictionaries.formats import save_dictionary
from tinyinterp.dictionaries.sparse_coder import PARAMETERS, SparseCoder
from tinyinterp.dictionaries.sparse_ops import embedding_decode, topk_encode

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoint"
CODER_FILE = "coder.safetensors"
TRAIN_LOG = "train_log.jsonl"
TRAIN_CFG = "train_cfg.json"


@dataclass
class StepStats:
    fvu: float
    aux: float
    l0: float
    dead_fraction: float


def _world() -> tuple[int, int]:
    if dist.is_available() and "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        if not dist.is_initialized():
            dist.init_process_group("gloo")
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _all_reduce(t: torch.Tensor, world: int) -> torch.Tensor:
    if world > 1:
        dist.all_reduce(t)
    return t


class DictionaryTrainer:
    """One training run: holds the coder, optimiser, feature ages and scales; ``run()`` trains to the budget."""

    def __init__(self, cfg: DictionaryConfig, train: TrainConfig, out_dir: Path, source=None):
        if cfg.activation != "topk":
            raise DictionaryError(f"only TopK dictionaries are trained here, not activation {cfg.activation!r}")
        self.cfg, self.train, self.out_dir = cfg, train, Path(out_dir)
        self.rank, self.world = _world()
        self.coder = SparseCoder(cfg)
        self.coder.reset_parameters(torch.Generator().manual_seed(train.seed))
        self.optimizer = torch.optim.Adam(self.coder.parameters(), lr=train.learning_rate(cfg.d_sae), betas=(0.9, 0.999))
        self.step, self.tokens = 0, 0
        self.since_fired = torch.zeros(cfg.d_sae, dtype=torch.long)
        self.scales: tuple[float, float] | None = None
        self.source = source
        self.aux_k = train.aux_k or max(1, cfg.d_out // 2)

    # -- persistence ----------------------------------------------------------------------------
    def _state(self) -> dict:
        return {"step": self.step, "tokens": self.tokens, "scales": self.scales,
                "position": getattr(self.source, "position", 0), "dictionary": self.cfg.to_dict(),
                "since_fired": self.since_fired.tolist()}

    def save_checkpoint(self) -> None:
        from tinyinterp.runs.rundir import atomic_save_tensors

        if self.rank != 0:
            return
        final = self.out_dir / CHECKPOINT_DIR
        tmp = self.out_dir / f".{CHECKPOINT_DIR}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        atomic_save_tensors(tmp / CODER_FILE, self.coder.tensors())
        torch.save(self.optimizer.state_dict(), tmp / OPTIMIZER_FILE)
        atomic_write_text(tmp / STATE_FILE, json.dumps(self._state()))
        old = self.out_dir / f".{CHECKPOINT_DIR}.old"
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            final.rename(old)
        tmp.rename(final)  # a kill between the renames leaves .old: resume() takes it
        shutil.rmtree(old, ignore_errors=True)

    def resume(self) -> bool:
        """Continue from ``out_dir/checkpoint`` (or a half-replaced ``.checkpoint.old``); False if none."""
        from tinyinterp.runs.rundir import load_tensors

        for name in (CHECKPOINT_DIR, f".{CHECKPOINT_DIR}.old"):
            ckpt = self.out_dir / name
            if (ckpt / STATE_FILE).is_file():
                break
        else:
            return False
        try:
            state = json.loads((ckpt / STATE_FILE).read_text(encoding="utf-8"))
            saved = DictionaryConfig(**state["dictionary"])
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise DictionaryError(f"{ckpt / STATE_FILE}: unreadable checkpoint state ({e}); delete {ckpt} to start over") from None
        if saved != self.cfg:
            raise DictionaryError(f"{ckpt}: the checkpoint is of another dictionary ({saved.hook_in}, width {saved.d_sae}, "
                                  f"k {saved.k}); use another --out or delete it")
        tensors = load_tensors(ckpt / CODER_FILE)
        with torch.no_grad():
            for name in PARAMETERS:
                getattr(self.coder, name).copy_(tensors[name])
        try:
            self.optimizer.load_state_dict(torch.load(ckpt / OPTIMIZER_FILE, weights_only=True))
        except Exception as e:  # an unpicklable or foreign file: never fall back to an unsafe load
            raise DictionaryError(f"{ckpt / OPTIMIZER_FILE}: unreadable optimizer state ({type(e).__name__}); "
                                  f"delete {ckpt} to start over") from None
        self.step, self.tokens = int(state["step"]), int(state["tokens"])
        self.scales = tuple(state["scales"]) if state["scales"] else None
        self.since_fired = torch.tensor(state["since_fired"], dtype=torch.long)
        if self.source is not None and hasattr(self.source, "position"):
            self.source.position = int(state["position"])
        log.info("resuming %s at step %d (%d tokens)", self.out_dir, self.step, self.tokens)
        return True

    # -- one step ---------------------------------------------------------------------------------
    def _measure_scales(self, x: torch.Tensor, y: torch.Tensor) -> None:
        s_in = 1.0 / float(x.norm(dim=1).mean().clamp_min(1e-8))
        s_out = s_in if self.cfg.kind == "sae" else 1.0 / float(y.norm(dim=1).mean().clamp_min(1e-8))
        self.scales = (s_in, s_out)
        with torch.no_grad():  # start the bias at the data mean (Gao et al. use the geometric median)
            self.coder.b_dec.copy_((y * s_out).mean(0))

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> StepStats:
        if self.scales is None:
            self._measure_scales(x, y)
        s_in, s_out = self.scales
        x, y = x * s_in, y * s_out
        coder = self.coder
        dead = self.since_fired >= self.train.dead_after_tokens
        n_dead = int(dead.sum())
        # The sparse step (sparse_ops): AuxK's choices among the dead features come out of the same encode.
        values, indices, aux_values, aux_indices = topk_encode(coder, x, self.cfg.k, dead.nonzero().squeeze(1), self.aux_k)
        recon = embedding_decode(coder.W_dec, values, indices) + coder.b_dec
        err = y - recon
        total_variance = (y - y.mean(0)).pow(2).sum().clamp_min(1e-12)
        fvu = err.pow(2).sum() / total_variance
        aux = fvu.new_zeros(())
        if n_dead:
            err_hat = embedding_decode(coder.W_dec, aux_values, aux_indices)
            aux = min(n_dead / self.aux_k, 1.0) * (err_hat - err.detach()).pow(2).sum() / total_variance
        loss = fvu + self.train.aux_coef * aux
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.world > 1:
            for p in coder.parameters():
                _all_reduce(p.grad, self.world).div_(self.world)
        coder.remove_parallel_gradient()
        torch.nn.utils.clip_grad_norm_(coder.parameters(), 1.0)
        self.optimizer.step()
        coder.normalize_decoder()
        fired = torch.zeros(self.cfg.d_sae, dtype=torch.long)
        fired.index_add_(0, indices[values > 0].reshape(-1), torch.ones_like(indices[values > 0].reshape(-1)))
        fired = _all_reduce(fired, self.world) > 0
        n_rows = len(x) * self.world
        self.since_fired += n_rows
        self.since_fired[fired] = 0
        self.step += 1
        self.tokens += n_rows
        l0 = float((values > 0).sum(-1).float().mean())
        return StepStats(float(fvu.detach()), float(aux.detach()), l0, float(dead.float().mean()))

    # -- the loop --------------------------------------------------------------------------------
    def start(self) -> None:
        """Write ``train_cfg.json`` and resume from a checkpoint if there is one."""
        if self.rank == 0:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.out_dir / TRAIN_CFG, json.dumps(
                {"dictionary": self.cfg.to_dict(), "train": {k: v for k, v in vars(self.train).items()}}, indent=2))
        self.resume()

    @property
    def done(self) -> bool:
        return self.tokens >= self.train.tokens

    def after_step(self, stats: StepStats, log_every: int = 20) -> bool:
        """Log and checkpoint on schedule after a step; True when this step was a logged one."""
        from tinyinterp.io.jsonl import append_jsonl

        logged = self.step % log_every == 0 or self.done
        if logged and self.rank == 0:
            append_jsonl(self.out_dir / TRAIN_LOG, {"step": self.step, "tokens": self.tokens, **vars(stats)})
        if self.step % self.train.checkpoint_every == 0:
            self.save_checkpoint()
        return logged

    def finish(self, stats: StepStats | None = None) -> SparseCoder:
        """Checkpoint, fold the scales into a copy of the coder and save it in SAELens's layout."""
        self.save_checkpoint()
        final = SparseCoder(dataclasses.replace(self.cfg))  # its own config: folding records the scales there
        final.load_state_dict(self.coder.state_dict())
        final.fold_scales(*self.scales)
        if self.rank == 0:
            save_dictionary(final, self.out_dir, {"training_tokens": self.tokens})
        log.info("trained %s on %s: %d steps, %d tokens, last FVU %.4f", self.cfg.kind, self.cfg.hook_in, self.step,
                 self.tokens, stats.fvu if stats else float("nan"))
        return final

    def run(self, progress: bool = True, log_every: int = 20) -> SparseCoder:
        from tqdm import tqdm

        self.start()
        total = self.train.tokens
        batch = self.train.batch_tokens
        bar = tqdm(total=total, initial=min(self.tokens, total), unit="tok", desc=f"training {self.cfg.kind}",
                   disable=not progress or self.rank != 0)
        stats = None
        try:
            batches = self.source.batches(batch)
            while not self.done:
                x, y = next(batches)
                stats = self.train_step(x, y)
                bar.update(len(x) * self.world)
                if self.after_step(stats, log_every):
                    bar.set_postfix(fvu=f"{stats.fvu:.3f}", dead=f"{stats.dead_fraction:.2f}")
        finally:
            bar.close()
        return self.finish(stats)


def train_dictionary(model, corpus, cfg: DictionaryConfig, train: TrainConfig, out_dir: Path,
                     cache: Path | None = None, progress: bool = True) -> SparseCoder:
    """Train ``cfg`` on activations of ``model`` over ``corpus`` (or a cache written by ``cache_activations``)."""
    rank, world = _world()
    if cache is not None:
        source = CachedActivations(cache, cfg, seed=train.seed, rank=rank, world=world)
    else:
        source = ActivationStream(model, corpus, cfg, train.seq_len, train.model_batch, train.buffer_tokens,
                                  seed=train.seed, rank=rank, world=world)
    return DictionaryTrainer(cfg, train, out_dir, source).run(progress=progress)
