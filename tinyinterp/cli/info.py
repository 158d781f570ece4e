"""Human-readable summaries of presets, run directories and models for ``tinyinterp info``."""

from __future__ import annotations

from pathlib import Path

from tinyinterp.runs import rundir
from tinyinterp.runs.checkpoints import latest_checkpoint, list_checkpoints
from tinyinterp.errors import TinyinterpError
from tinyinterp.io.jsonl import read_jsonl
from tinyinterp.models.zoo import OFFICIAL_CHECKPOINTS, PRESETS, preset_config

DEFAULT_VOCAB = 10_001  # 10,000 kept BPE tokens + <|endoftext|>, the paper's scheme


def _fmt_params(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}K"


def list_presets() -> str:
    lines = [f"{'preset':<20} {'d_model':>7} {'layers':>6} {'heads':>5} {'n_ctx':>5} {'params':>8}  mirrors"]
    for name, p in PRESETS.items():
        cfg = preset_config(name, d_vocab=DEFAULT_VOCAB)
        mirrors = OFFICIAL_CHECKPOINTS.get(name, p.description)
        lines.append(
            f"{name:<20} {p.d_model:>7} {p.n_layers:>6} {p.n_heads:>5} {p.n_ctx:>5} "
            f"{_fmt_params(cfg.n_params()):>8}  {mirrors}"
        )
    lines.append(f"(parameter counts assume a {DEFAULT_VOCAB:,}-token vocabulary)")
    return "\n".join(lines)


def describe_preset(name: str) -> str:
    cfg = preset_config(name, d_vocab=DEFAULT_VOCAB)
    lines = [f"preset {name}: {PRESETS[name].description}"]
    lines += [f"  {k}: {v}" for k, v in cfg.to_dict().items()]
    lines.append(f"  d_head: {cfg.d_head}")
    lines.append(f"  parameters: {cfg.n_params():,} ({cfg.n_params(include_embeddings=False):,} without embeddings)")
    return "\n".join(lines)


def describe_run(path: Path, checkpoint: Path | None = None) -> str:
    """A finished run; or, with ``checkpoint``, a run without final weights described from that checkpoint."""
    source = checkpoint or path
    cfg = rundir.read_model_config(source)
    config = rundir.read_json(source / rundir.CONFIG_FILE)
    lines = [f"run {path}"]
    if checkpoint is not None:
        lines[0] += (f": no final weights ({rundir.WEIGHTS_FILE}) yet, being trained or interrupted; "
                     f"latest checkpoint {checkpoint.name} (`tinyinterp generate` and `analyze` use it)")
    lines.append(f"  preset: {cfg.preset or '(custom)'}")
    lines.append(
        f"  shape: d_model={cfg.d_model} layers={cfg.n_layers} heads={cfg.n_heads} d_mlp={cfg.d_mlp} "
        f"n_ctx={cfg.n_ctx} d_vocab={cfg.d_vocab}"
    )
    lines.append(f"  parameters: {cfg.n_params():,}")
    train = config.get("train") or {}
    if train:
        keys = ("batch_size", "seq_len", "lr", "max_steps", "max_minutes", "seed")
        lines.append("  training: " + ", ".join(f"{k}={train[k]}" for k in keys if k in train))
    weights = source / rundir.WEIGHTS_FILE
    if weights.is_file():  # recomputes the checksum recorded at write time: a flipped byte shows here
        lines.append(f"  weights: {rundir.verify_tensors_file(weights)}")
    else:
        lines.append(f"  weights: {rundir.WEIGHTS_FILE} not written yet (training in progress or interrupted)")
    metrics = read_jsonl(path / rundir.METRICS_FILE, skip_bad=True)
    if metrics:
        last = metrics[-1]
        vals = [m for m in metrics if m.get("val_loss") is not None]
        lines.append(f"  trained: {last.get('step')} steps, {last.get('tokens', 0):,} tokens")
        if vals:
            lines.append(f"  last val loss: {vals[-1]['val_loss']:.4f} nats/token (step {vals[-1]['step']})")
    if (path / rundir.CHECKPOINTS_DIR).is_dir():
        ckpts = [c.folder.name for c in list_checkpoints(path)]
        lines.append(f"  checkpoints: {len(ckpts)}" + (f" (latest {ckpts[-1]})" if ckpts else ""))
    analysis = path / rundir.ANALYSIS_DIR
    if analysis.is_dir():
        found = sorted(p.name for p in analysis.iterdir() if p.is_dir())
        lines.append(f"  analyses: {', '.join(found) if found else '(none)'}")
    return "\n".join(lines)


def describe_model(name: str) -> str:
    from tinyinterp.models.loading import load

    model = load(name)
    c = model.cfg
    n = sum(p.numel() for p in model.parameters())
    return (
        f"model {name}\n  shape: d_model={c.d_model} layers={c.n_layers} heads={c.n_heads} d_mlp={c.d_mlp} "
        f"n_ctx={c.n_ctx} d_vocab={c.d_vocab}\n  parameters: {n:,}"
    )


def describe(target: str | None) -> str:
    if target is None:
        return list_presets()
    if target in PRESETS:
        return describe_preset(target)
    path = Path(target).expanduser()
    if path.is_dir() and (path / rundir.CONFIG_FILE).is_file() and "model" in rundir.read_json(path / rundir.CONFIG_FILE):
        return describe_run(path)
    latest = latest_checkpoint(path) if path.is_dir() and not (path / rundir.WEIGHTS_FILE).is_file() else None
    if latest is not None:
        return describe_run(path, checkpoint=latest)
    if path.exists() and not path.is_dir():
        raise TinyinterpError(f"{path}: expected a run directory, a preset name or a model name")
    return describe_model(target)
