"""Run directories: the one on-disk format every part of tinyinterp reads and writes.

A run directory holds ``config.json`` (the dataclass configs), ``tokenizer.json``,
``model.safetensors``, an append-only ``metrics.jsonl``, ``checkpoints/step_XXXXXXXX/``
and ``analysis/``. Weights are safetensors only (never pickle). Every write goes through
a temp file + ``os.replace`` so an interrupted write never leaves a corrupt file behind.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from tinyinterp.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text  # noqa: F401 (re-exported)
from tinyinterp.config import ModelConfig
from tinyinterp.errors import RunDirError

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
WEIGHTS_FILE = "model.safetensors"
METRICS_FILE = "metrics.jsonl"
CHECKPOINTS_DIR = "checkpoints"
ANALYSIS_DIR = "analysis"


def atomic_save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        # safetensors refuses shared storage (tied weights); clone so every tensor owns its memory.
        save_file({k: v.detach().contiguous().clone().cpu() for k, v in tensors.items()}, tmp, metadata=metadata)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise RunDirError(f"{path}: file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunDirError(f"{path}: not valid JSON ({e})") from None


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one record and fsync: a crash loses at most the line being written."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Read an append-only log, skipping a torn final line left by a crash."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                log.warning("%s: ignoring torn last line", path)
            else:
                raise RunDirError(f"{path}:{i + 1}: not valid JSON") from None
    return records


def save_weights(path: Path, model: torch.nn.Module) -> None:
    atomic_save_tensors(path, dict(model.state_dict()))


def load_weights(path: Path, model: torch.nn.Module) -> None:
    """Load safetensors weights into ``model``, with one-line errors for every way this goes wrong."""
    path = Path(path)
    if not path.is_file():
        raise RunDirError(f"{path}: weights file not found")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise RunDirError(f"{path}: corrupt safetensors file ({e})") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise RunDirError(
            f"{path}: weights do not match the config (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape:
            raise RunDirError(
                f"{path}: {name} has shape {tuple(tensor.shape)} but config.json implies {tuple(expected[name].shape)}"
            )
    model.load_state_dict(state)


def save_run(run_dir: Path, model, tokenizer, extra_config: dict[str, Any] | None = None) -> Path:
    """Write config.json, tokenizer.json and model.safetensors of ``model`` into ``run_dir``."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    config = {"model": model.cfg.to_dict(), **(extra_config or {})}
    tokenizer.save(run_dir / TOKENIZER_FILE)
    save_weights(run_dir / WEIGHTS_FILE, model)
    atomic_write_json(run_dir / CONFIG_FILE, config)  # last: a run dir with config.json is complete
    return run_dir


def read_model_config(run_dir: Path) -> ModelConfig:
    path = Path(run_dir) / CONFIG_FILE
    config = read_json(path)
    if not isinstance(config, dict) or "model" not in config:
        raise RunDirError(f"{path}: missing the 'model' section")
    try:
        return ModelConfig.from_dict(config["model"])
    except (TypeError, ValueError) as e:
        raise RunDirError(f"{path}: invalid model config ({e})") from None


def is_run_dir(path: Path) -> bool:
    path = Path(path)
    return (path / CONFIG_FILE).is_file() and (path / WEIGHTS_FILE).is_file()


def load_run(run_dir: Path, weights: Path | None = None, device: str | torch.device = "cpu"):
    """Load the model (with ``.tokenizer``) saved in ``run_dir``; ``weights`` picks another safetensors file."""
    from tinyinterp.model import HookedTransformer
    from tinyinterp.tokenizer import Tokenizer

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: run directory not found")
    cfg = read_model_config(run_dir)
    tok_path = run_dir / TOKENIZER_FILE
    if not tok_path.is_file():
        raise RunDirError(f"{tok_path}: tokenizer file not found")
    try:
        tokenizer = Tokenizer.load(tok_path)
    except Exception as e:  # tokenizers raises bare Exceptions on bad JSON
        raise RunDirError(f"{tok_path}: unreadable tokenizer ({e})") from None
    if tokenizer.vocab_size != cfg.d_vocab:
        raise RunDirError(
            f"{tok_path}: tokenizer has {tokenizer.vocab_size} tokens but config.json says d_vocab={cfg.d_vocab}"
        )
    model = HookedTransformer(cfg, tokenizer=tokenizer)
    load_weights(weights or run_dir / WEIGHTS_FILE, model)
    return model.to(device).eval()
