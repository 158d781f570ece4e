"""The training loop: AdamW, warm-up + cosine, clipping, accumulation, eval, checkpoints, exact resume.

Read top to bottom in :meth:`Trainer.fit`. Design choices:

* **Weight decay** (0.1) applies to the Linear weight matrices only (qkv, out, fc_in, fc_out,
  unembed). Biases, LayerNorm gains/biases and both embeddings are not decayed: decaying a
  token embedding shrinks rare tokens' rows for no benefit, and LayerNorm/bias decay fights the
  normalisation.
* **Exact resume**: batches are a pure function of ``(seed, step)`` (:mod:`training.data`) and the
  learning rate a pure function of ``step``; a checkpoint stores weights, AdamW state, RNG state,
  the step and the cosine horizon, so ``N`` steps + ``kill -9`` + resume gives bit-identical
  weights to ``2N`` straight steps.
* **Metrics exactly once**: a record is appended (fsynced) before its step's checkpoint, so after
  any kill the log may run ahead of the newest checkpoint, or end in a torn line. At start, holding
  the run-dir lock, :meth:`Trainer.reconcile_metrics` cuts the torn tail and keeps only records up to
  the step training continues from (0 for a fresh start), one per step; steps after it are logged
  again as they are re-run. Two trainers never share a run dir (:func:`tinyinterp.runs.lock.lock_run_dir`).
* **Disk errors** (ENOSPC…) while writing a checkpoint, the final weights or a metrics record end
  the run with one line; checkpoints are written into a temp folder and renamed, so the previous
  checkpoint stays intact and a rerun resumes from it.
* **DDP**: the model is wrapped in ``DistributedDataParallel``; each rank takes its shard of the
  global batch, the logged loss is all-reduced, and only rank 0 writes files.
* **NaN/inf** loss or gradient norm stops training with :class:`TrainingDivergedError` before
  the bad update is applied; the last good checkpoint stays on disk.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from tinyinterp.runs import rundir
from tinyinterp.io.atomic import atomic_write_json
from tinyinterp.models.config import ModelConfig
from tinyinterp.models.devices import resolve_device
from tinyinterp.errors import TinyinterpError
from tinyinterp.io.jsonl import append_jsonl, read_jsonl, repair_torn_tail, write_jsonl
from tinyinterp.models.transformer import HookedTransformer
from tinyinterp.runs.lock import lock_run_dir
from tinyinterp.runs.checkpoints import latest_checkpoint
from tinyinterp.runs.layout import snapshot_dir
from training import checkpoint as ckpt
from training import snapshots
from training.config import TrainConfig
from training.data import BatchSampler, DocumentSource, JoinedStream, validation_batches
from training.scaling_flops import flops_per_token

log = logging.getLogger(__name__)

# Test hook: after writing the checkpoint of this step the process sleeps (so a test can kill -9 it).
PAUSE_AFTER_CKPT_ENV = "TINYINTERP_TEST_PAUSE_AFTER_CHECKPOINT"


class TrainingDivergedError(TinyinterpError):
    """The loss or gradient became NaN/inf."""


@dataclass
class DistContext:
    """Where this process sits in a (possibly 1-process) distributed run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    tokens: int
    final_train_loss: float | None
    final_val_loss: float | None
    elapsed_s: float
    stopped_by: str
    resumed_from: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def disk_errors(what: str):
    """Turn an OSError (disk full, permissions…) while writing ``what`` into one line that says what to do."""
    try:
        yield
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise TinyinterpError(f"{what}: write failed ({reason}); free space or fix the folder, then rerun to resume") from None


def find_resume_point(run_dir: Path, dist_ctx: DistContext) -> Path | None:
    """The checkpoint folder a run continues from (None: a fresh start), looked up once per run.

    Rank 0 (holding the run's lock) first clears interrupted checkpoint writes, which may put back a
    half-swapped folder; the other ranks wait for that, then every rank reads the same answer.
    """
    if dist_ctx.is_main:
        ckpt.remove_stale_temp_dirs(run_dir)
    if dist_ctx.enabled:
        dist.barrier()
    return latest_checkpoint(run_dir)


def lr_at(step: int, cfg: TrainConfig, horizon: int | None) -> float:
    """Linear warm-up to ``cfg.lr``, then cosine decay to ``cfg.final_lr`` at ``horizon``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if horizon is None:  # time-budgeted run before the horizon is calibrated
        return cfg.lr
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, horizon - cfg.warmup_steps))
    return cfg.final_lr + 0.5 * (cfg.lr - cfg.final_lr) * (1 + math.cos(math.pi * progress))


def param_groups(model: HookedTransformer, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decay Linear weight matrices, not biases, LayerNorms or embeddings."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_matrix = p.dim() >= 2 and not name.startswith(("embed.", "pos_embed."))
        (decay if is_matrix else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class Trainer:
    """Trains one model into ``run_dir``; call :meth:`fit`."""

    def __init__(self, cfg: TrainConfig, model_cfg: ModelConfig, train_data: DocumentSource, eot_id: int,
                 run_dir: Path, val_data: DocumentSource | None = None, tokenizer=None,
                 extra_config: dict[str, Any] | None = None, dist_ctx: DistContext | None = None,
                 progress: bool = True, resume_from: Path | str | None = "latest"):
        self.cfg, self.model_cfg = cfg, model_cfg
        self.run_dir = Path(run_dir)
        self.tokenizer = tokenizer
        self.dist = dist_ctx or DistContext()
        self.progress = progress and self.dist.is_main
        if cfg.seq_len > model_cfg.n_ctx:
            raise TinyinterpError(f"--seq-len {cfg.seq_len} exceeds the context of preset {cfg.preset} ({model_cfg.n_ctx})")
        self.device = resolve_device(cfg.device)
        if self.device.type == "cuda" and self.dist.enabled:
            self.device = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(self.device)
        use_bf16 = cfg.dtype == "bfloat16" or (cfg.dtype == "auto" and self.device.type == "cuda")
        self.autocast_dtype = torch.bfloat16 if use_bf16 else None
        if cfg.threads:
            torch.set_num_threads(cfg.threads)

        micro_steps = cfg.grad_accum
        self.sampler = BatchSampler(JoinedStream(train_data, eot_id, "training corpus"), cfg.batch_size, cfg.seq_len,
                                    cfg.seed, micro_steps, self.dist.rank, self.dist.world_size)
        self.val_batches = []
        if val_data is not None and cfg.eval_batches:
            self.val_batches = validation_batches(JoinedStream(val_data, eot_id, "validation corpus"), cfg.eval_batches,
                                                  cfg.batch_size, cfg.seq_len, cfg.seed, self.dist.rank, self.dist.world_size)
        self.config_record = {"model": model_cfg.to_dict(), "train": cfg.to_dict(), **(extra_config or {})}
        self.flops_per_token = flops_per_token(model_cfg, cfg.seq_len)  # metrics carry (tokens, flops, loss) for scaling fits

        torch.manual_seed(cfg.seed)  # same init on every rank (DDP also broadcasts rank 0's weights)
        self.model = HookedTransformer(model_cfg, tokenizer=tokenizer).to(self.device)
        self.optimizer = torch.optim.AdamW(param_groups(self.model, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas,
                                           fused=self.device.type == "cuda")
        self.step, self.tokens_seen, self.elapsed_before = 0, 0, 0.0
        self.horizon: int | None = cfg.max_steps
        self.resumed_from: int | None = None
        self.resume_from = resume_from
        """Checkpoint folder to resume from, None for a fresh start, or "latest": look it up when fitting."""

    # ----- resume -------------------------------------------------------------------------------

    def reconcile_metrics(self) -> None:
        """Make ``metrics.jsonl`` hold each step up to ``self.step`` at most once, and nothing after it.

        Records after the step training continues from will be produced again; a torn last line is
        cut off so the next append starts on a fresh line. Needs the run-dir lock (rank 0 only).
        """
        path = self.run_dir / rundir.METRICS_FILE
        if not path.exists():
            return
        repair_torn_tail(path)
        records = read_jsonl(path, skip_bad=True)
        by_step: dict[int, dict[str, Any]] = {}
        for r in records:  # the last record of a step wins: it belongs to the run the checkpoint came from
            if isinstance(r.get("step"), int) and 0 < r["step"] <= self.step:
                by_step[r["step"]] = r
        kept = [by_step[s] for s in sorted(by_step)]
        if kept != records:
            log.info("%s: keeping %d of %d records (training continues from step %d)", path, len(kept), len(records), self.step)
            write_jsonl(path, kept)

    def maybe_resume(self) -> int | None:
        """Continue from ``resume_from`` (by default the newest checkpoint of the run dir); returns its step."""
        path = self.resume_from
        if path == "latest":
            path = find_resume_point(self.run_dir, self.dist)
        if path is None:
            return None
        loaded = ckpt.load_checkpoint(path, self.model, self.device)
        self.optimizer.load_state_dict(loaded.optimizer_state)
        if loaded.rng:
            ckpt.set_rng_state(loaded.rng)
        state = loaded.state
        self.step, self.tokens_seen = int(state["step"]), int(state["tokens"])
        self.elapsed_before = float(state.get("elapsed_s", 0.0))
        if self.cfg.max_steps is None:
            self.horizon = state.get("horizon")
        saved_train = state.get("train_config", {})
        changed = {k: (saved_train[k], v) for k, v in self.cfg.to_dict().items() if k in saved_train and saved_train[k] != v}
        if changed:
            log.warning("resuming with changed settings (old, new): %s", changed)
        self.resumed_from = self.step
        log.info("resumed from %s (step %d, %d tokens)", path, self.step, self.tokens_seen)
        return self.step

    # ----- the loop -----------------------------------------------------------------------------

    def fit(self, hold_lock: bool = True) -> TrainResult:
        """Train (resuming when the run dir holds a checkpoint) while holding the run dir's lock.

        ``hold_lock=False``: the caller already holds it (``training.train`` takes it once, before it
        looks up the checkpoint whose settings it reuses)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with lock_run_dir(self.run_dir) if self.dist.is_main and hold_lock else contextlib.nullcontext():
            return self._fit()

    def _fit(self) -> TrainResult:
        cfg = self.cfg
        self.maybe_resume()
        if self.dist.is_main:
            with disk_errors(str(self.run_dir / rundir.METRICS_FILE)):
                self.reconcile_metrics()
        model = self.model
        if cfg.compile:
            model = torch.compile(model)
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            model = DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        tokens_per_step = cfg.batch_size * cfg.seq_len
        budget_s = cfg.max_minutes * 60 if cfg.max_minutes is not None else None
        start = time.perf_counter()
        calib_start: tuple[int, float] | None = None
        last_record = (self.step, start)  # tokens/s is measured between metrics records
        train_loss = val_loss = None
        stopped_by = "max_steps"
        bar = tqdm(total=self.horizon, initial=self.step, desc="training", unit="step", disable=not self.progress,
                   dynamic_ncols=True)
        model.train()
        while self.horizon is None or self.step < self.horizon:
            lr = lr_at(self.step, cfg, self.horizon)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            loss_sum = torch.zeros((), device=self.device)
            for micro in range(cfg.grad_accum):
                x, y = self.sampler.micro_batch_for(self.step, micro, self.device)
                sync = micro == cfg.grad_accum - 1
                with (model.no_sync() if self.dist.enabled and not sync else contextlib.nullcontext()), self._autocast():
                    loss = model(x, return_type="loss", targets=y) / cfg.grad_accum
                loss.backward()
                loss_sum += loss.detach().float()
            if self.dist.enabled:
                dist.all_reduce(loss_sum)
                loss_sum /= self.dist.world_size
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
            train_loss = loss_sum.item()
            if not (math.isfinite(train_loss) and math.isfinite(grad_norm.item())):
                self.optimizer.zero_grad(set_to_none=True)
                bar.close()
                last = latest_checkpoint(self.run_dir)
                what = "loss" if not math.isfinite(train_loss) else "gradient norm"
                raise TrainingDivergedError(
                    f"training diverged at step {self.step + 1}: {what} is {train_loss if what == 'loss' else grad_norm.item()}; "
                    f"last good checkpoint: {last or 'none'}; lower --lr (now {cfg.lr:g}) or --grad-clip and rerun to resume"
                )
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            self.tokens_seen += tokens_per_step
            elapsed = self.elapsed_before + time.perf_counter() - start
            bar.update(1)
            bar.set_postfix(loss=f"{train_loss:.3f}", lr=f"{lr:.2e}")

            if self.horizon is None and budget_s is not None:
                self._maybe_calibrate_horizon(calib_start, elapsed, budget_s)
                if calib_start is None:
                    calib_start = (self.step, elapsed)  # step 1 includes warm-up overheads; time from here
                if self.horizon is not None:
                    bar.total = self.horizon
                    bar.refresh()

            at_eval = self.step % cfg.eval_every == 0
            at_ckpt = self.step % cfg.ckpt_every == 0
            done = self.horizon is not None and self.step >= self.horizon
            if (at_eval or at_ckpt) and budget_s is not None and not done:
                if self._agree(elapsed >= budget_s):
                    done, stopped_by = True, "max_minutes"
            record = None
            if self.step % cfg.log_every == 0 or at_eval or done:
                now = time.perf_counter()
                speed = (self.step - last_record[0]) * tokens_per_step / max(now - last_record[1], 1e-9)
                record = {"step": self.step, "tokens": self.tokens_seen, "train_loss": train_loss, "lr": lr,
                          "tokens_per_s": round(speed, 1), "elapsed_s": round(elapsed, 3),
                          "flops": self.tokens_seen * self.flops_per_token}
                last_record = (self.step, now)
            if (at_eval or done) and self.val_batches:
                val_loss = self.evaluate(model)
                record["val_loss"] = val_loss
            if record is not None and self.dist.is_main:
                with disk_errors(str(self.run_dir / rundir.METRICS_FILE)):
                    append_jsonl(self.run_dir / rundir.METRICS_FILE, record)
            if at_ckpt or done:
                self.save_checkpoint(elapsed)
            if self.dist.is_main and snapshots.is_snapshot_step(self.step, cfg.snapshots_per_octave):
                with disk_errors(str(snapshot_dir(self.run_dir, self.step))):
                    snapshots.save_snapshot(self.run_dir, self.step, self.model)
            if done:
                break
        bar.close()
        if train_loss is None:  # resumed a run that had already reached its last step: report, don't train
            records = read_jsonl(self.run_dir / rundir.METRICS_FILE)
            train_loss = records[-1]["train_loss"] if records else None
            val_loss = self.evaluate(model) if self.val_batches else None
        elapsed = self.elapsed_before + time.perf_counter() - start
        result = TrainResult(self.run_dir, self.step, self.tokens_seen, train_loss, val_loss, elapsed, stopped_by, self.resumed_from)
        if self.dist.is_main:
            self.save_final(result)
        return result

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def _agree(self, flag: bool) -> bool:
        """Rank 0's decision, shared so every rank stops at the same step."""
        if not self.dist.enabled:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.broadcast(t, src=0)
        return bool(t.item())

    def _maybe_calibrate_horizon(self, calib_start, elapsed: float, budget_s: float) -> None:
        """Fix the cosine horizon from the measured step time (time-budgeted runs only)."""
        if calib_start is None or self.step - calib_start[0] < self.cfg.calibration_steps:
            return
        per_step = (elapsed - calib_start[1]) / (self.step - calib_start[0])
        if self.val_batches:  # an eval costs ~1/3 of a training step per batch (forward only)
            per_step *= 1 + len(self.val_batches) / (3 * self.cfg.eval_every)
        estimate = self.step + int(max(0.0, budget_s - elapsed) / max(per_step, 1e-9))
        # Round down to a logging boundary so the cosine ends within the budget; the last step is
        # always evaluated and checkpointed, so it need not fall on an eval/checkpoint boundary.
        boundary = self.cfg.log_every
        estimate = max((self.step // boundary + 1) * boundary, estimate // boundary * boundary)
        t = torch.tensor([float(estimate)], device=self.device)
        if self.dist.enabled:
            dist.broadcast(t, src=0)
        self.horizon = int(t.item())
        log.info("time budget %.1f min: %.3f s/step -> cosine horizon %d steps", budget_s / 60, per_step, self.horizon)

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module) -> float:
        """Mean validation loss (nats/token) over the fixed validation windows, averaged over ranks."""
        model.eval()
        totals = torch.zeros(2, device=self.device, dtype=torch.float64)
        for x, y in self.val_batches:
            with self._autocast():
                loss = self.model(x.to(self.device), return_type="loss", targets=y.to(self.device))
            totals[0] += loss.double() * y.numel()
            totals[1] += y.numel()
        if self.dist.enabled:
            dist.all_reduce(totals)
        model.train()
        return (totals[0] / totals[1]).item()

    # ----- writing ------------------------------------------------------------------------------

    def _state(self, elapsed: float) -> dict[str, Any]:
        return {"tokens": self.tokens_seen, "elapsed_s": elapsed, "horizon": self.horizon,
                "world_size": self.dist.world_size, "train_config": self.cfg.to_dict(),
                "torch_version": torch.__version__}

    def save_checkpoint(self, elapsed: float) -> None:
        if self.dist.is_main:
            last = latest_checkpoint(self.run_dir)
            where = f"checkpoint of step {self.step} in {self.run_dir / rundir.CHECKPOINTS_DIR}"
            with disk_errors(where + (f" (the previous one, {last.name}, is intact)" if last else "")):
                path = ckpt.save_checkpoint(self.run_dir, self.step, self.model, self.optimizer, self._state(elapsed),
                                            self.config_record, self.tokenizer)
            ckpt.prune_checkpoints(self.run_dir, self.cfg.keep_last)
            log.info("saved %s", path)
            pause = os.environ.get(PAUSE_AFTER_CKPT_ENV)
            if pause and int(pause) == self.step:
                log.warning("%s=%s: sleeping so a test can kill this process", PAUSE_AFTER_CKPT_ENV, pause)
                time.sleep(3600)
        if self.dist.enabled:
            dist.barrier()

    def save_final(self, result: TrainResult) -> None:
        """config.json (+ the run summary), tokenizer.json and model.safetensors at the run-dir root."""
        summary = {"steps": result.steps, "tokens": result.tokens, "final_train_loss": result.final_train_loss,
                   "final_val_loss": result.final_val_loss, "elapsed_s": round(result.elapsed_s, 3),
                   "stopped_by": result.stopped_by}
        extra = {k: v for k, v in self.config_record.items() if k != "model"}
        extra["result"] = summary
        with disk_errors(f"final weights in {self.run_dir} (checkpoint of step {result.steps} is intact)"):
            self._write_final(extra)

    def _write_final(self, extra: dict[str, Any]) -> None:
        if self.tokenizer is not None:
            rundir.save_run(self.run_dir, self.model, self.tokenizer, extra_config=extra)
        else:  # bare token-id training (tests): same files minus tokenizer.json
            rundir.save_weights(self.run_dir / rundir.WEIGHTS_FILE, self.model)
            atomic_write_json(self.run_dir / rundir.CONFIG_FILE, {"model": self.model_cfg.to_dict(), **extra})

