"""Training configuration: one dataclass, saved as the ``train`` section of a run's ``config.json``.

Batch semantics (the thing most worth getting right for DDP and exact resume):
``batch_size`` is the GLOBAL number of sequences per optimizer step, summed over gradient
accumulation micro-steps and over DDP ranks. Each rank runs ``grad_accum`` micro-batches of
``batch_size // (grad_accum * world_size)`` sequences, so the same config trains the same
model whether it runs in one process or under ``torchrun --nproc_per_node=N``.

Stopping: ``max_steps`` fixes the length (and the cosine horizon). ``max_minutes`` is a time
budget; training stops at the first eval/checkpoint boundary after the budget is spent, and the
number of steps taken is recorded in ``config.json`` and ``metrics.jsonl``. With only
``max_minutes`` the cosine horizon is estimated once from the measured step time after
``calibration_steps`` steps (rounded down to a multiple of ``log_every``) and saved in each
checkpoint, so a resumed run follows the same schedule.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

DTYPES = ("auto", "float32", "bfloat16")


@dataclass
class TrainConfig:
    """Everything the trainer needs besides the model shape (which comes from ``preset``)."""

    preset: str = "tinystories-1m"
    """Zoo preset (see ``tinyinterp.models.zoo.PRESETS``); d_vocab comes from the tokenizer."""
    arch: str | None = None
    """Architecture override: ``gpt-neo`` (the tinystories-* presets' own, as the official checkpoints),
    ``gpt2`` or ``legacy`` (tinyinterp 0.1); None = the preset's."""
    data: list[str] = field(default_factory=list)
    """Training text sources (.txt / .jsonl files, folders, or a hub dataset); empty = corpus default."""
    val_data: str | None = None
    """Held-out validation source; None = a deterministic split of ``data``."""
    vocab_size: int = 10_000
    """K of the restricted BPE: the K most frequent base tokens + <|endoftext|>."""
    base_tokenizer: str | None = None
    """Base BPE to restrict; None = local GPT-2 tokenizer.json if the data folder exists, else the hub GPT-Neo one."""
    tokenizer: str | None = None
    """Use this existing tokenizer.json instead of building one (e.g. another run's)."""

    batch_size: int = 16
    """Global sequences per optimizer step (over accumulation micro-steps and DDP ranks)."""
    seq_len: int = 256
    """Tokens per training sequence; at most the preset's context (n_ctx)."""
    grad_accum: int = 1
    lr: float = 2e-3
    """Peak learning rate; tiny models tolerate (and need) larger rates than GPT-2's 6e-4."""
    min_lr: float | None = None
    """Floor of the cosine decay; None = lr / 10."""
    warmup_steps: int = 50
    max_steps: int | None = None
    max_minutes: float | None = None
    calibration_steps: int = 10
    """With only max_minutes: steps timed to estimate the cosine horizon."""
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    """Max global gradient norm; 0 disables clipping."""

    eval_every: int = 50
    eval_batches: int = 4
    """Validation batches of ``batch_size`` sequences each (fixed windows, same every eval)."""
    log_every: int = 10
    """metrics.jsonl gets a train record every this many steps (and at every eval)."""
    ckpt_every: int = 200
    snapshots_per_octave: int = 0
    """Weights-only snapshots at steps round(2^(i/n)), kept for good for ``analyze emergence`` (0 = off)."""
    keep_last: int = 2
    """Checkpoints kept on disk (oldest deleted first); the final one is always kept."""

    seed: int = 1337
    device: str = "auto"
    """'auto' = cuda when available, else cpu."""
    dtype: str = "auto"
    """'auto' = bf16 autocast on CUDA, float32 on CPU."""
    compile: bool = False
    threads: int | None = None
    """torch.set_num_threads for CPU training; None leaves torch's default."""

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)  # JSON gives a list back
        if isinstance(self.data, str):
            self.data = [self.data]
        self.data = [str(d) for d in self.data]
        for name in ("batch_size", "seq_len", "grad_accum", "eval_every", "log_every", "ckpt_every",
                     "keep_last", "vocab_size", "calibration_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        for name in ("warmup_steps", "eval_batches"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 0")
        if self.max_steps is None and self.max_minutes is None:
            raise ValueError("give --max-steps or --max-minutes (or both) so training knows when to stop")
        if self.max_steps is not None and self.max_steps <= 0:
            raise ValueError(f"--max-steps must be positive, got {self.max_steps}")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ValueError(f"--max-minutes must be positive, got {self.max_minutes}")
        if not self.lr > 0:
            raise ValueError(f"--lr must be positive, got {self.lr}")
        if self.batch_size % self.grad_accum:
            raise ValueError(f"--batch-size {self.batch_size} is not divisible by --grad-accum {self.grad_accum}")
        if self.dtype not in DTYPES:
            raise ValueError(f"--dtype must be one of {DTYPES}, got {self.dtype!r}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")

    @property
    def final_lr(self) -> float:
        return self.lr / 10 if self.min_lr is None else self.min_lr

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown TrainConfig fields: {sorted(unknown)}")
        return cls(**data)
