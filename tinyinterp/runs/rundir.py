"""Run directories: the one on-disk format every part of tinyinterp reads and writes.

A run directory holds ``config.json`` (the dataclass configs), ``tokenizer.json``,
``model.safetensors``, an append-only ``metrics.jsonl``, ``checkpoints/step_XXXXXXXX/``
and ``analysis/`` (the names: :mod:`tinyinterp.runs.layout`). Weights are safetensors only (never pickle). Every write goes through
a temp file + ``os.replace`` so an interrupted write never leaves a corrupt file behind.

Integrity checks, each one line when it fails:

* **Weights checksum.** Every safetensors file written here records the sha256 of its tensors
  (names, dtypes, shapes and bytes) in its header metadata; :func:`load_tensors` recomputes it, so a
  flipped byte in the data region (which the safetensors header cannot notice) is refused. Files
  without the key (older runs) load unchecked. Cost, measured on the tinystories-33m preset
  (181 MB of float32 weights at a 10,001-token vocabulary): sha256 runs at ~450 MB/s on one core,
  so about 0.4 s on load and the same on save, next to 1.2-2.6 s for building and filling the model.
  A write that fails inside safetensors (disk full...) is re-raised as the ``OSError`` it wraps, so callers
  that turn disk errors into one line see it like any other write.
* **Tokenizer fingerprint.** ``config.json`` keeps ``tokenizer.fingerprint``; :func:`load_run`
  refuses a ``tokenizer.json`` with another fingerprint even when its vocabulary size matches.
* **One writer.** :func:`tinyinterp.runs.lock.lock_run_dir` takes an exclusive ``flock`` on the run directory and on
  ``RUN/.lock`` for the life of a training process. The kernel drops it when the process dies (even ``kill -9``), so a lock left by a
  killed process is never stale: the next trainer takes it over. A second live writer gets one line
  naming the holder.
* **Metrics log.** ``metrics.jsonl`` is appended one fsynced line at a time (:mod:`tinyinterp.io.jsonl`).
  Readers skip a torn last line; the lock holder cuts it off (:func:`tinyinterp.io.jsonl.repair_torn_tail`)
  before appending, so the next record never lands on a half-written line.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from tinyinterp.io.atomic import atomic_write_json, make_temp_file, mode_for_new_file
from tinyinterp.models.config import ModelConfig
from tinyinterp.errors import RunDirError
from tinyinterp.runs.layout import (  # noqa: F401 (the names live in runlayout; older callers read them here)
    ANALYSIS_DIR,
    CHECKPOINTS_DIR,
    CONFIG_FILE,
    METRICS_FILE,
    TOKENIZER_FILE,
    WEIGHTS_FILE,
)

log = logging.getLogger(__name__)

CHECKSUM_KEY = "tinyinterp.sha256"
"""safetensors metadata key holding :func:`tensors_digest` of the file's tensors."""


class CorruptWeightsError(RunDirError):
    """A safetensors file does not match the checksum recorded when it was written."""


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over (name, dtype, shape, raw bytes) of every tensor, in name order.

    Hashes the tensors rather than the file so the same function serves writing (before the file
    exists) and reading (after safetensors has parsed it). Works for every dtype (bf16 included):
    the bytes are viewed as uint8 without a copy when the tensor is contiguous on the CPU.
    """
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


def atomic_save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write ``tensors`` as safetensors atomically, recording their checksum in the metadata."""
    path = Path(path)
    fd, tmp = make_temp_file(path)
    os.close(fd)
    try:
        # safetensors refuses shared storage (tied weights); clone so every tensor owns its memory.
        owned = {k: v.detach().contiguous().clone().cpu() for k, v in tensors.items()}
        try:
            save_file(owned, tmp, metadata={**(metadata or {}), CHECKSUM_KEY: tensors_digest(owned)})
        except SafetensorError as e:  # an I/O failure (ENOSPC...) surfaces as SafetensorError: give it its OSError back
            raise _as_os_error(e, path) from None
        os.chmod(tmp, mode_for_new_file(path))  # safetensors recreates the file 0600; give it ordinary permissions
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _as_os_error(error: SafetensorError, path: Path) -> OSError:
    """The OSError inside a safetensors write error (``... No space left on device (os error 28)``), else EIO."""
    match = re.search(r"(?:os error |code: )(\d+)", str(error))
    code = int(match.group(1)) if match else errno.EIO
    return OSError(code, os.strerror(code), str(path))


def read_json(path: Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise RunDirError(f"{path}: file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunDirError(f"{path}: not valid JSON ({e})") from None


def save_weights(path: Path, model: torch.nn.Module) -> None:
    atomic_save_tensors(path, dict(model.state_dict()))


def load_tensors(path: Path, verify: bool = True) -> dict[str, torch.Tensor]:
    """Read a safetensors file; with ``verify``, refuse it when its recorded checksum does not match."""
    path = Path(path)
    if not path.is_file():
        raise RunDirError(f"{path}: weights file not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise RunDirError(f"{path}: corrupt safetensors file ({e})") from None
    recorded = metadata.get(CHECKSUM_KEY)
    if verify and recorded is not None and tensors_digest(tensors) != recorded:
        raise CorruptWeightsError(
            f"{path}: corrupt file: its tensors do not match the sha256 recorded when it was written "
            "(damaged on disk or in transfer); restore it or use a checkpoint from checkpoints/"
        )
    return tensors


def verify_tensors_file(path: Path) -> str:
    """``"ok"``, ``"no checksum recorded"`` or the one-line problem of a safetensors file (for ``tinyinterp info``)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            recorded = (f.metadata() or {}).get(CHECKSUM_KEY)
        load_tensors(path)
    except RunDirError as e:
        return str(e)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        return f"{path}: corrupt safetensors file ({e})"
    return "ok (sha256 verified)" if recorded is not None else "no checksum recorded (written by an older tinyinterp)"


def load_weights(path: Path, model: torch.nn.Module) -> None:
    """Load safetensors weights into ``model``, with one-line errors for every way this goes wrong."""
    path = Path(path)
    state = load_tensors(path)
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
    # The tokenizer's fingerprint goes into config.json so load_run can refuse a swapped tokenizer.json.
    config = {"model": model.cfg.to_dict(), "tokenizer": tokenizer.describe(), **(extra_config or {})}
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


def check_tokenizer_fingerprint(run_dir: Path, tokenizer) -> None:
    """Refuse a tokenizer whose fingerprint differs from the one ``config.json`` recorded at training time."""
    config = read_json(Path(run_dir) / CONFIG_FILE)
    section = config.get("tokenizer") if isinstance(config, dict) else None
    recorded = section.get("fingerprint") if isinstance(section, dict) else None
    if recorded is None:  # runs saved without a tokenizer section: nothing to compare against
        return
    if tokenizer.fingerprint() != recorded:
        raise RunDirError(
            f"{Path(run_dir) / TOKENIZER_FILE}: tokenizer {tokenizer.fingerprint()[:12]} is not the one this model was "
            f"trained with ({str(recorded)[:12]} in {CONFIG_FILE}); put back the run's own tokenizer.json"
        )


def is_run_dir(path: Path) -> bool:
    path = Path(path)
    return (path / CONFIG_FILE).is_file() and (path / WEIGHTS_FILE).is_file()


def load_run(run_dir: Path, weights: Path | None = None, device: str | torch.device = "cpu"):
    """Load the model (with ``.tokenizer``) saved in ``run_dir``; ``weights`` picks another safetensors file."""
    from tinyinterp.models.transformer import HookedTransformer
    from tinyinterp.data.tokenizer import Tokenizer

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
    check_tokenizer_fingerprint(run_dir, tokenizer)
    model = HookedTransformer(cfg, tokenizer=tokenizer)
    load_weights(weights or run_dir / WEIGHTS_FILE, model)
    return model.to(device).eval()
