"""The scaling-sweep spec: a grid over width, depth, heads, lr and seed, with a compute budget per run.

A spec is YAML (or JSON, which is YAML too)::

    defaults: {d_model: 64, n_layers: 2, n_heads: 4, lr: 3.0e-3, seed: 0}
    grid:                      # one mapping, or a list of them whose runs are united
      - {d_model: [32, 64, 128]}              # widths at the default depth and heads
      - {d_model: [64], n_layers: [1, 4]}     # depth at fixed width
      - {d_model: [64], n_heads: [1, 2, 8]}   # heads at fixed width
    budget: {flops: [3.0e+11, 1.0e+12]}       # or {tokens: [...]}: every run gets each budget
    evals_per_run: 8           # validation points along each run's curve
    warmup_fraction: 0.05      # warm-up steps as a fraction of each run's steps
    train: {batch_size: 16, seq_len: 128, vocab_size: 2048}   # any TrainConfig field, shared by all runs

Each grid point x budget is one :class:`RunPoint`, trained into ``<out>/<point.name>/`` (an ordinary
run directory). A FLOPs budget becomes a step count through :func:`training.scaling_flops.flops_per_token`,
so a compute-frontier (IsoFLOP) grid is one spec. Shards split the points into n parts of similar planned
FLOPs, so ``--shard i/n`` for i = 0..n-1 covers every run exactly once and the shards end at similar times.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinyinterp.models.config import ModelConfig
from tinyinterp.errors import TinyinterpError
from training.config import TrainConfig
from training.scaling_flops import flops_per_token, matmul_params

AXES = ("d_model", "n_layers", "n_heads", "lr", "seed")
BUDGET_KINDS = ("tokens", "flops")
SPEC_FILE = "scaling_spec.json"
"""The resolved spec, saved in the sweep folder; ``list`` prints commands that point at it."""
CUSTOM_PRESET = "custom"
"""TrainConfig.preset of a scaling run: the shape comes from the grid, not from the zoo."""
_SPEC_KEYS = {"defaults", "grid", "budget", "evals_per_run", "warmup_fraction", "n_ctx", "d_mlp_ratio", "train"}


def exact_number(x: float) -> str:
    """``f"{x:g}"`` when it reads back as ``x`` (the names of earlier releases), else the shortest exact form.

    ``:g`` keeps 6 significant digits, so 1e-3 and 1.0000001e-3 once shared a run directory.
    """
    short = f"{x:g}"
    return short if float(short) == x else repr(float(x))


def _positive_number(value: Any, what: str) -> float:
    """A finite number > 0 (not a bool, not a string), else one line naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise TinyinterpError(f"{what}: give a list of finite positive numbers, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class RunPoint:
    """One run of the sweep: a model shape, an optimiser setting and a budget."""

    d_model: int
    n_layers: int
    n_heads: int
    lr: float
    seed: int
    budget_kind: str
    """'tokens' or 'flops'."""
    budget: float

    @property
    def name(self) -> str:
        """Unique per point: numbers are written exactly (``:g`` where that is exact, as every earlier name)."""
        tag = "c" if self.budget_kind == "flops" else "t"
        budget = exact_number(self.budget).replace("+", "")
        return f"d{self.d_model}-l{self.n_layers}-h{self.n_heads}-lr{exact_number(self.lr)}-s{self.seed}-{tag}{budget}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RunPlan:
    """A point made concrete for a vocabulary: its model config, steps and compute."""

    point: RunPoint
    model: ModelConfig
    train: TrainConfig
    flops_per_token: int

    @property
    def tokens(self) -> int:
        return self.train.max_steps * self.train.batch_size * self.train.seq_len

    @property
    def flops(self) -> int:
        return self.tokens * self.flops_per_token

    def record(self) -> dict[str, Any]:
        """What the run's config.json carries under ``scaling`` (and summaries repeat)."""
        return {"point": self.point.to_dict(), "flops_per_token": self.flops_per_token,
                "n_params": self.model.n_params(), "n_params_non_embedding": self.model.n_params(include_embeddings=False),
                "n_matmul": matmul_params(self.model), "planned_tokens": self.tokens, "planned_flops": self.flops,
                "flops_formula": "6 * N_matmul + 12 * n_layers * d_model * seq_len (training/scaling_flops.py)"}


@dataclass
class ScalingSpec:
    grid: list[dict[str, list]]
    budget_kind: str
    budgets: list[float]
    defaults: dict[str, Any] = field(default_factory=dict)
    evals_per_run: int = 8
    warmup_fraction: float = 0.05
    n_ctx: int | None = None
    """Model context; None = the training seq_len."""
    d_mlp_ratio: int = 4
    train: dict[str, Any] = field(default_factory=dict)
    """TrainConfig fields shared by every run (lr, seed, max_steps and preset are set per run)."""

    def __post_init__(self) -> None:
        if self.budget_kind not in BUDGET_KINDS:
            raise TinyinterpError(f"spec budget: use 'tokens' or 'flops', got {self.budget_kind!r}")
        if not self.budgets or not all(isinstance(b, (int, float)) and not isinstance(b, bool) and math.isfinite(b) and b > 0
                                       for b in self.budgets):
            raise TinyinterpError(f"spec budget.{self.budget_kind}: give a list of finite positive numbers, got {self.budgets!r}")
        if not isinstance(self.defaults, dict):
            raise TinyinterpError(f"spec defaults: must be a mapping of axis -> value, got {self.defaults!r}")
        bad = set(self.defaults) - set(AXES)
        if bad:
            raise TinyinterpError(f"spec defaults: unknown axes {sorted(bad)}; use {', '.join(AXES)}")
        if not isinstance(self.train, dict):
            raise TinyinterpError(f"spec train: must be a mapping of TrainConfig fields, got {self.train!r}")
        if isinstance(self.evals_per_run, bool) or not isinstance(self.evals_per_run, int) or self.evals_per_run < 1:
            raise TinyinterpError(f"spec evals_per_run: must be a positive integer, got {self.evals_per_run!r}")
        if (isinstance(self.warmup_fraction, bool) or not isinstance(self.warmup_fraction, (int, float))
                or not 0 <= self.warmup_fraction < 1):
            raise TinyinterpError(f"spec warmup_fraction: must be a number in [0, 1), got {self.warmup_fraction!r}")
        if self.n_ctx is not None and (isinstance(self.n_ctx, bool) or not isinstance(self.n_ctx, int) or self.n_ctx < 1):
            raise TinyinterpError(f"spec n_ctx: must be a positive integer (or absent: the training seq_len), got {self.n_ctx!r}")
        if isinstance(self.d_mlp_ratio, bool) or not isinstance(self.d_mlp_ratio, int) or self.d_mlp_ratio < 1:
            raise TinyinterpError(f"spec d_mlp_ratio: must be a positive integer, got {self.d_mlp_ratio!r}")
        for key in ("lr", "seed", "max_steps", "preset", "max_minutes"):
            if key in self.train:
                raise TinyinterpError(f"spec train.{key}: set per run by the sweep; use defaults/grid (lr, seed) or budget")
        try:
            self.base_train()
        except (TypeError, ValueError) as e:
            raise TinyinterpError(f"spec train: {e}") from None
        for sub in self.grid:
            bad = set(sub) - set(AXES)
            if bad:
                raise TinyinterpError(f"spec grid: unknown axes {sorted(bad)}; use {', '.join(AXES)}")
        self.points()  # validates every shape
        if self.n_ctx is not None and self.n_ctx < self.base_train().seq_len:
            raise TinyinterpError(f"spec n_ctx: {self.n_ctx} is shorter than the training seq_len {self.base_train().seq_len}")

    # ----- loading ------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "spec") -> "ScalingSpec":
        if not isinstance(data, dict):
            raise TinyinterpError(f"{source}: expected a mapping with 'grid' and 'budget'")
        unknown = set(data) - _SPEC_KEYS
        if unknown:
            raise TinyinterpError(f"{source}: unknown keys {sorted(unknown)}; expected some of {sorted(_SPEC_KEYS)}")
        budget = data.get("budget") or {}
        if not isinstance(budget, dict) or len(budget) != 1 or next(iter(budget)) not in BUDGET_KINDS:
            raise TinyinterpError(f"{source}: 'budget' must be {{tokens: [...]}} or {{flops: [...]}}, got {budget!r}")
        kind, values = next(iter(budget.items()))
        grid = data.get("grid") or [{}]
        grid = [grid] if isinstance(grid, dict) else grid
        if not isinstance(grid, list) or not all(isinstance(g, dict) for g in grid):
            raise TinyinterpError(f"{source}: 'grid' must be a mapping of axis -> list, or a list of such mappings")
        grid = [{k: list(v) if isinstance(v, (list, tuple)) else [v] for k, v in g.items()} for g in grid]
        values = [_positive_number(v, f"{source}: budget.{kind}") for v in (values if isinstance(values, list) else [values])]
        fields = {k: data[k] for k in ("defaults", "evals_per_run", "warmup_fraction", "n_ctx", "d_mlp_ratio", "train") if k in data}
        return cls(grid=grid, budget_kind=kind, budgets=values, **fields)

    @classmethod
    def load(cls, path: str | Path) -> "ScalingSpec":
        import yaml

        path = Path(path)
        if not path.is_file():
            raise TinyinterpError(f"spec {path}: no such file; give a YAML spec (see training/scaling_tiny.yaml)")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise TinyinterpError(f"spec {path}: not valid YAML ({str(e).splitlines()[0]})") from None
        return cls.from_dict(data, source=f"spec {path}")

    def to_dict(self) -> dict[str, Any]:
        return {"defaults": self.defaults, "grid": self.grid, "budget": {self.budget_kind: self.budgets},
                "evals_per_run": self.evals_per_run, "warmup_fraction": self.warmup_fraction, "n_ctx": self.n_ctx,
                "d_mlp_ratio": self.d_mlp_ratio, "train": self.train}

    # ----- expansion ----------------------------------------------------------------------------

    def base_train(self) -> TrainConfig:
        return TrainConfig.from_dict({**self.train, "preset": CUSTOM_PRESET, "max_steps": 1})

    def points(self) -> list[RunPoint]:
        """Every run, in a fixed order (sub-grids in order, axes crossed, budgets innermost); duplicates dropped."""
        base = self.base_train()
        axis_default = {"d_model": 64, "n_layers": 2, "n_heads": 4, "lr": base.lr, "seed": base.seed, **self.defaults}
        seen, points = set(), []
        for sub in self.grid:
            values = [sub.get(axis, [axis_default[axis]]) for axis in AXES]
            for d, layers, heads, lr, seed in itertools.product(*values):
                for budget in self.budgets:
                    try:
                        point = RunPoint(int(d), int(layers), int(heads), float(lr), int(seed), self.budget_kind, float(budget))
                    except (TypeError, ValueError):
                        raise TinyinterpError(f"spec grid: non-numeric value among {d, layers, heads, lr, seed}") from None
                    if (min(point.d_model, point.n_layers, point.n_heads) < 1 or point.d_model % point.n_heads
                            or not math.isfinite(point.lr) or point.lr <= 0):
                        raise TinyinterpError(f"spec grid: invalid shape d_model={d}, n_layers={layers}, n_heads={heads}, "
                                              f"lr={lr} (d_model must be a multiple of n_heads, all positive)")
                    if point not in seen:
                        seen.add(point)
                        points.append(point)
        names: dict[str, RunPoint] = {}
        for point in points:  # exact names make this impossible; refuse rather than let two runs share a folder
            if names.setdefault(point.name, point) != point:
                raise TinyinterpError(f"spec grid: {names[point.name]} and {point} would share the run folder {point.name}")
        return points

    def plan(self, point: RunPoint, d_vocab: int) -> RunPlan:
        """Model config, step count and schedule of ``point`` for a tokenizer of ``d_vocab`` tokens."""
        base = self.base_train()
        model = ModelConfig(d_model=point.d_model, n_layers=point.n_layers, n_heads=point.n_heads,
                            d_mlp=self.d_mlp_ratio * point.d_model, n_ctx=self.n_ctx or base.seq_len,
                            d_vocab=d_vocab, preset=point.name)
        fpt = flops_per_token(model, base.seq_len)
        tokens = point.budget if point.budget_kind == "tokens" else point.budget / fpt
        steps = max(1, round(tokens / (base.batch_size * base.seq_len)))
        eval_every = max(1, steps // self.evals_per_run)
        train = dataclasses.replace(
            base, lr=point.lr, seed=point.seed, max_steps=steps, warmup_steps=int(steps * self.warmup_fraction),
            eval_every=eval_every, log_every=max(1, eval_every // 4), ckpt_every=eval_every * max(1, self.evals_per_run // 4),
            keep_last=1,
        )
        return RunPlan(point, model, train, fpt)


def parse_shard(text: str) -> tuple[int, int]:
    """'i/n' -> (i, n) with 0 <= i < n."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise TinyinterpError(f"--shard {text!r}: expected i/n, e.g. 0/4 (shards are numbered from 0)") from None
    if n < 1 or not 0 <= i < n:
        raise TinyinterpError(f"--shard {text!r}: need 0 <= i < n, e.g. 0/4 … 3/4")
    return i, n


def shard_points(points: list[RunPoint], n: int, cost: dict[RunPoint, float]) -> list[list[RunPoint]]:
    """Split ``points`` into n shards of similar total cost: largest first, each to the least loaded shard.

    Deterministic (ties go to the lower shard; equal costs keep the grid order), so every process of a job
    array computes the same split; each shard keeps the grid order inside it.
    """
    loads, members = [0.0] * n, [set() for _ in range(n)]
    for index in sorted(range(len(points)), key=lambda k: (-cost[points[k]], k)):
        target = min(range(n), key=lambda s: (loads[s], s))
        loads[target] += cost[points[index]]
        members[target].add(index)
    return [[p for k, p in enumerate(points) if k in m] for m in members]


def select(points: list[RunPoint], shard: tuple[int, int] = (0, 1), only: list[str] | None = None,
           cost: dict[RunPoint, float] | None = None) -> list[RunPoint]:
    """The points of shard i of n (balanced by ``cost``, e.g. planned FLOPs; round-robin without it),
    optionally only the named ones."""
    i, n = shard
    chosen = shard_points(points, n, cost)[i] if cost else points[i::n]
    if only:
        names = {p.name for p in points}
        missing = [o for o in only if o not in names]
        if missing:
            raise TinyinterpError(f"--only: {missing} are not runs of this spec; `list` prints the names")
        chosen = [p for p in chosen if p.name in set(only)]
    return chosen


def planned_flops(spec: ScalingSpec, d_vocab: int | None = None) -> dict[RunPoint, float]:
    """Training FLOPs of every point; ``d_vocab`` defaults to the restricted BPE's K + 1 (<|endoftext|>)."""
    d_vocab = d_vocab or spec.base_train().vocab_size + 1
    return {p: float(spec.plan(p, d_vocab).flops) for p in spec.points()}


def total_flops(spec: ScalingSpec, d_vocab: int | None = None) -> float:
    return sum(planned_flops(spec, d_vocab).values())
