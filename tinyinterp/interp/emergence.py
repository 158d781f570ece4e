"""Emergence across training: neuron roles, head classes and attention on fixed prompts, per checkpoint.

For every saved state of a run — log-spaced weight snapshots (``train --snapshots-per-octave N``), the
kept checkpoints and the final weights — the same analyses run on the same documents: the neuron index
and its purity (share of role neurons, mean type purity), the head classes (local / semantic / mixed)
and, on a few fixed prompts, each head's attention pattern. One model object and one tokenized corpus
serve every checkpoint (only the weights change), which is what makes this cheaper than one
``tinyinterp analyze`` per checkpoint (``bench/emergence.py``).

Results are cached per checkpoint in ``RUN/analysis/emergence/step_XXXXXXXX/`` (``neurons/``,
``heads/``, ``patterns.safetensors``, then ``summary.json`` last — its presence marks the step done),
so a rerun analyses only new checkpoints and a killed run resumes. :class:`EmergenceResult` gathers
the summaries into one row per step, against training tokens, and draws the curves.

    >>> result = analyze_emergence("runs/demo", corpus)
    >>> result.to_frame()[["step", "tokens", "role_share", "local", "semantic", "mixed"]]
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file
from tqdm.auto import tqdm

from tinyinterp.runs import rundir
from tinyinterp.io.atomic import atomic_write_json
from tinyinterp.runs.checkpoints import ALL_KINDS, Checkpoint, list_checkpoints
from tinyinterp.errors import TinyinterpError
from tinyinterp.io.jsonl import read_jsonl
from tinyinterp.runs.layout import EMERGENCE_SUMMARY_FILE, METRICS_FILE, STEP_GLOB, emergence_dir, parse_step_name, step_name

log = logging.getLogger(__name__)

SUMMARY_FILE = EMERGENCE_SUMMARY_FILE
PATTERNS_FILE = "patterns.safetensors"
PLOT_FILE = "emergence.png"
DEFAULT_PROMPTS = (
    "Once upon a time, there was a little girl named Lily. She loved to play with her ball in the park.",
    "Tom and Lily went to the park. Tom gave the ball to Lily because she was sad.",
    "One day, a big dog saw a cat in the garden. The dog wanted to play, but the cat ran away.",
)


@dataclass
class EmergenceConfig:
    max_docs: int = 200
    """Documents indexed per checkpoint (the same ones every time)."""
    k: int = 20
    """Top activations kept per neuron."""
    n_samples: int = 32
    """Windows in each checkpoint's head sample."""
    seq_len: int = 128
    batch_size: int = 16
    prompts: tuple[str, ...] = DEFAULT_PROMPTS
    """Fixed prompts whose attention patterns are kept for every checkpoint."""
    device: str = "cpu"


def _metrics_by_step(run_dir: Path) -> dict[int, dict]:
    by_step: dict[int, dict] = {}
    for record in read_jsonl(Path(run_dir) / METRICS_FILE, skip_bad=True):
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            merged = by_step.setdefault(record["step"], {})
            merged.update(record)
    return by_step


def _tokens_per_step(metrics: dict[int, dict]) -> int:
    """Tokens per optimizer step, from any logged record (constant for a run)."""
    for step, record in sorted(metrics.items(), reverse=True):
        if step > 0 and isinstance(record.get("tokens"), (int, float)):
            return int(round(record["tokens"] / step))
    return 0


def emergence_states(run_dir: Path) -> list[Checkpoint]:
    """Every saved state of ``run_dir`` with a known step, one per step (snapshot over final over checkpoint)."""
    return [c for c in list_checkpoints(run_dir, kinds=ALL_KINDS) if c.step is not None]


def step_dir(out_dir: Path, step: int) -> Path:
    return Path(out_dir) / step_name(step)


@dataclass
class EmergenceResult:
    rows: list[dict] = field(default_factory=list)
    """One summary per analysed step (see :func:`analyze_checkpoint`), ascending."""
    out_dir: Path | None = None

    def to_frame(self) -> pd.DataFrame:
        scalar = [{k: v for k, v in row.items() if not isinstance(v, (list, dict))} for row in self.rows]
        return pd.DataFrame(scalar)

    def head_track(self, layer: int, head: int) -> pd.DataFrame:
        """One head through training: class, distance/content explained, mean distance on the prompts."""
        out = []
        for row in self.rows:
            h = row["heads"][layer][head]
            out.append({"step": row["step"], "tokens": row["tokens"], **h})
        return pd.DataFrame(out)

    def neuron_track(self, layer: int, neuron: int) -> pd.DataFrame:
        """One neuron through training: its top tokens and max activation at each step."""
        out = []
        for row in self.rows:
            index_dir = step_dir(self.out_dir, row["step"]) / "neurons"
            tensors = load_file(str(index_dir / "index.safetensors"))
            top = tensors["top_tokens"][layer, neuron].tolist()
            out.append({"step": row["step"], "tokens": row["tokens"], "top_tokens": top,
                        "max_activation": float(tensors["top_values"][layer, neuron, 0])})
        return pd.DataFrame(out)

    def patterns(self, step: int) -> dict[str, torch.Tensor]:
        """``{"prompt_i": (n_layers, n_heads, T, T)}`` attention patterns on the fixed prompts at ``step``."""
        return {k: v.float() for k, v in load_file(str(step_dir(self.out_dir, step) / PATTERNS_FILE)).items()}

    @classmethod
    def load(cls, out_dir: str | Path) -> "EmergenceResult":
        out_dir = Path(out_dir)
        rows = []
        for summary in sorted(out_dir.glob(f"{STEP_GLOB}/{SUMMARY_FILE}")):
            try:
                row = json.loads(summary.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise TinyinterpError(f"{summary}: not valid JSON ({e}); delete it to re-analyse that step") from None
            _check_summary(summary, row)
            rows.append(row)
        if not rows:
            raise TinyinterpError(f"{out_dir}: no emergence results; run `tinyinterp analyze emergence RUN`")
        return cls(sorted(rows, key=lambda r: r["step"]), out_dir)

    def plot(self, path: str | Path | None = None) -> Path:
        """Role share, type purity, head classes and mean attention distance against training tokens."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        df = self.to_frame()
        x = df["tokens"].clip(lower=1)
        fig, axes = plt.subplots(1, 3, figsize=(15, 4))
        axes[0].plot(x, df["role_share"], marker="o", label="role neurons (share)")
        axes[0].plot(x, df["mean_type_purity"], marker="s", label="mean type purity")
        axes[0].set_title("Neurons")
        for cls_name in ("local", "semantic", "mixed"):
            axes[1].plot(x, df[cls_name], marker="o", label=cls_name)
        axes[1].set_title("Head classes (count)")
        axes[2].plot(x, df["prompt_mean_distance"], marker="o", label="mean attention distance")
        axes[2].plot(x, df["prompt_prev_token"], marker="s", label="attention on previous token")
        axes[2].set_title("Attention on the fixed prompts")
        for ax in axes:
            ax.set_xscale("log")
            ax.set_xlabel("training tokens")
            ax.legend(fontsize=8)
        fig.tight_layout()
        path = Path(path) if path is not None else Path(self.out_dir) / PLOT_FILE
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path


_SUMMARY_NUMBERS = ("tokens", "role_share", "prompt_mean_distance", "prompt_prev_token")
_SUMMARY_OPTIONAL = ("val_loss", "train_loss", "mean_type_purity")
_SUMMARY_COUNTS = ("local", "semantic", "mixed")


def _is_number(value, optional: bool = False) -> bool:
    if value is None:
        return optional
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _check_summary(path: Path, row) -> None:
    """Refuse, in one line, a step summary whose fields do not have the types :func:`analyze_checkpoint` writes."""
    redo = "delete it to re-analyse that step"
    if not isinstance(row, dict):
        raise TinyinterpError(f"{path}: not a JSON object; {redo}")
    step = row.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step != parse_step_name(path.parent.name):
        raise TinyinterpError(f"{path}: 'step' is {step!r}, expected the folder's step {parse_step_name(path.parent.name)}; {redo}")
    for key in _SUMMARY_NUMBERS + _SUMMARY_OPTIONAL:
        if not _is_number(row.get(key), optional=key in _SUMMARY_OPTIONAL):
            raise TinyinterpError(f"{path}: '{key}' is {row.get(key)!r}, expected a finite number; {redo}")
    for key in _SUMMARY_COUNTS:
        value = row.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise TinyinterpError(f"{path}: '{key}' is {value!r}, expected a head count; {redo}")
    heads = row.get("heads")
    if not isinstance(heads, list) or not all(isinstance(layer, list) and all(isinstance(h, dict) for h in layer) for layer in heads):
        raise TinyinterpError(f"{path}: 'heads' must be a list (layers) of lists (heads) of objects; {redo}")


def _prompt_patterns(model, prompts: tuple[str, ...]) -> tuple[dict[str, torch.Tensor], np.ndarray, np.ndarray]:
    """Patterns on each prompt, plus per-head mean attention distance and previous-token attention."""
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(model.cfg.n_layers)]
    patterns, distances, prev = {}, [], []
    for i, prompt in enumerate(prompts):
        tokens = torch.tensor([model.tokenizer.encode(prompt)[: model.cfg.n_ctx]], device=next(model.parameters()).device)
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names, return_cache_object=False)
        stacked = torch.stack([cache[n][0] for n in names])  # (L, H, T, T)
        patterns[f"prompt_{i}"] = stacked.half().cpu()
        T = stacked.shape[-1]
        q, k = torch.arange(T)[:, None], torch.arange(T)[None]
        distances.append((stacked.float().cpu() * (q - k).clamp_min(0)).sum(-1).mean(-1))  # (L, H)
        prev.append(stacked.float().cpu().diagonal(offset=-1, dim1=-2, dim2=-1).mean(-1) if T > 1 else torch.zeros(stacked.shape[:2]))
    return patterns, torch.stack(distances).mean(0).numpy(), torch.stack(prev).mean(0).numpy()


def analyze_checkpoint(model, corpus, checkpoint: Checkpoint, out: Path, config: EmergenceConfig,
                       metrics: dict | None = None) -> dict:
    """Load ``checkpoint``'s weights into ``model`` and write its step folder; returns the summary."""
    from safetensors.torch import save_file

    from tinyinterp.interp.categories import neuron_purity
    from tinyinterp.interp.heads import HeadConfig, analyze_heads
    from tinyinterp.interp.neuron_index import NeuronIndexConfig, build_neuron_index

    rundir.load_weights(checkpoint.weights, model)
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    index = build_neuron_index(model, corpus, out / "neurons",
                               NeuronIndexConfig(k=config.k, batch_size=config.batch_size, max_docs=config.max_docs,
                                                 device=config.device), progress=False)
    purity = neuron_purity(index, model.tokenizer, corpus)
    purity.save(out / "neurons")
    heads = analyze_heads(model, corpus, HeadConfig(n_samples=config.n_samples, seq_len=config.seq_len,
                                                    batch_size=config.batch_size, device=config.device), progress=False)
    heads.save(out / "heads")
    patterns, distance, prev = _prompt_patterns(model, config.prompts)
    save_file(patterns, str(out / PATTERNS_FILE))

    frame = heads.to_frame()
    head_rows = [[{} for _ in range(model.cfg.n_heads)] for _ in range(model.cfg.n_layers)]
    for row in frame.to_dict("records"):
        layer, head = int(row["layer"]), int(row["head"])
        head_rows[layer][head] = {
            "head_class": row["head_class"],
            "distance_explained": _num(row.get("distance_explained")),
            "content_explained": _num(row.get("content_explained")),
            "prompt_mean_distance": float(distance[layer, head]),
            "prompt_prev_token": float(prev[layer, head]),
        }
    type_purity = purity.to_frame().get("type_purity")
    metrics = metrics or {}
    summary = {
        "step": checkpoint.step, "kind": checkpoint.kind,
        "tokens": int(metrics.get("tokens", 0)), "val_loss": _num(metrics.get("val_loss")),
        "train_loss": _num(metrics.get("train_loss")),
        "role_share": float(np.mean(purity.role_mask())),
        "mean_type_purity": float(np.nanmean(type_purity)) if type_purity is not None else None,
        **{c: int(n) for c, n in heads.counts().items()},
        "prompt_mean_distance": float(distance.mean()), "prompt_prev_token": float(prev.mean()),
        "heads": head_rows,
    }
    atomic_write_json(out / SUMMARY_FILE, summary)  # last: marks the step done
    return summary


def _num(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if np.isnan(value) else value


def analyze_emergence(run_dir: str | Path, corpus, config: EmergenceConfig | None = None, out_dir: str | Path | None = None,
                      model=None, progress: bool = True) -> EmergenceResult:
    """Analyse every checkpoint of ``run_dir`` not analysed yet (see the module docstring)."""
    config = config or EmergenceConfig()
    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else emergence_dir(run_dir)
    checkpoints = emergence_states(run_dir)
    if not checkpoints:
        raise TinyinterpError(
            f"{run_dir}: no checkpoints, snapshots or final weights to analyse; train with --snapshots-per-octave 2"
        )
    todo = [c for c in checkpoints if not (step_dir(out_dir, c.step) / SUMMARY_FILE).is_file()]
    log.info("emergence: %d checkpoints, %d to analyse", len(checkpoints), len(todo))
    if todo:
        model = model or rundir.load_run(run_dir, device=config.device)
        metrics = _metrics_by_step(run_dir)
        per_step = _tokens_per_step(metrics)
        for checkpoint in tqdm(todo, desc="checkpoints", disable=not progress):
            record = dict(metrics.get(checkpoint.step, {}))
            record.setdefault("tokens", checkpoint.step * per_step)  # snapshot steps need not be logged
            analyze_checkpoint(model, corpus, checkpoint, step_dir(out_dir, checkpoint.step), config, record)
    result = EmergenceResult.load(out_dir)
    result.plot()
    return result
