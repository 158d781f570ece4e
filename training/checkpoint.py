"""Atomic training checkpoints: ``checkpoints/step_XXXXXXXX/`` appears whole or not at all.

A checkpoint is written into a hidden temp folder ``checkpoints/.tmp-step_XXXXXXXX-<pid>/``
(``config.json``, ``tokenizer.json``, ``model.safetensors``, ``optimizer.pt``, ``rng.safetensors``
and, last, ``state.json``), fsynced, and then renamed into place; a rename is atomic on POSIX,
so a crash (even ``kill -9``) mid-write leaves only a temp folder, which
:func:`latest_checkpoint` never picks and :func:`remove_stale_temp_dirs` deletes. Weights are
safetensors; the optimizer state goes through ``torch.save`` and is read back with
``torch.load(weights_only=True)`` (plain tensors, numbers and lists only, no pickled code); a file
holding anything else is refused with one line that says to delete the checkpoint, never with
torch's own advice to disable the check. Re-saving an existing step swaps folders through a
``.tmp-old-`` name; if a kill lands between the two renames, :func:`remove_stale_temp_dirs` puts
the old folder back instead of deleting it.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tinyinterp import rundir
from tinyinterp.atomic import atomic_write_json
from tinyinterp.errors import RunDirError

log = logging.getLogger(__name__)

OPTIMIZER_FILE = "optimizer.pt"
STATE_FILE = "state.json"
RNG_FILE = "rng.safetensors"
_STEP_DIR = re.compile(r"^step_(\d{8})$")
_TMP_PREFIX = ".tmp-"


def checkpoint_name(step: int) -> str:
    return f"step_{step:08d}"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of ``run_dir`` as (step, path), oldest first."""
    root = Path(run_dir) / rundir.CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = _STEP_DIR.match(path.name)
        if match and path.is_dir() and (path / STATE_FILE).is_file() and (path / rundir.WEIGHTS_FILE).is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint folder, or None. Temp folders of interrupted writes never qualify."""
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


_OLD_SWAP = re.compile(rf"^{re.escape(_TMP_PREFIX)}old-(step_\d{{8}})-\d+$")


def remove_stale_temp_dirs(run_dir: Path) -> None:
    """Delete temp folders left by checkpoint writes that were interrupted (restoring a half-swapped one)."""
    root = Path(run_dir) / rundir.CHECKPOINTS_DIR
    if root.is_dir():
        for path in sorted(root.iterdir()):
            swapped = _OLD_SWAP.match(path.name)
            if swapped and not (root / swapped.group(1)).exists() and (path / STATE_FILE).is_file():
                log.info("restoring %s: its replacement was interrupted", swapped.group(1))
                os.replace(path, root / swapped.group(1))
                continue
            if path.name.startswith(_TMP_PREFIX):
                log.info("removing interrupted checkpoint write %s", path)
                shutil.rmtree(path, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rng_state() -> dict[str, torch.Tensor]:
    state = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["torch_cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["torch_cpu"])
    if "torch_cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["torch_cuda"])


def save_checkpoint(run_dir: Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    state: dict[str, Any], config: dict[str, Any], tokenizer=None) -> Path:
    """Write checkpoint ``step`` atomically and return its folder."""
    root = Path(run_dir) / rundir.CHECKPOINTS_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(step)
    tmp = root / f"{_TMP_PREFIX}{checkpoint_name(step)}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        if tokenizer is not None:
            tokenizer.save(tmp / rundir.TOKENIZER_FILE)
        rundir.save_weights(tmp / rundir.WEIGHTS_FILE, model)
        with open(tmp / OPTIMIZER_FILE, "wb") as f:
            torch.save(optimizer.state_dict(), f)
            f.flush()
            os.fsync(f.fileno())
        rundir.atomic_save_tensors(tmp / RNG_FILE, rng_state())
        atomic_write_json(tmp / rundir.CONFIG_FILE, config)
        atomic_write_json(tmp / STATE_FILE, {**state, "step": step})  # last: marks the folder complete
        _fsync_dir(tmp)
        if final.exists():  # re-saving a step (a resumed run ending where it started): swap, then delete
            old = root / f"{_TMP_PREFIX}old-{checkpoint_name(step)}-{os.getpid()}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def prune_checkpoints(run_dir: Path, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` checkpoints."""
    found = list_checkpoints(run_dir)
    for _, path in found[:-keep_last] if keep_last > 0 else found:
        shutil.rmtree(path, ignore_errors=True)


@dataclass
class LoadedCheckpoint:
    path: Path
    state: dict[str, Any]
    optimizer_state: dict[str, Any]
    rng: dict[str, torch.Tensor]


def _load_optimizer_state(path: Path, device: torch.device | str) -> dict[str, Any]:
    """``torch.load(weights_only=True)``; every failure becomes one line of our own.

    torch's messages for a refused file recommend ``weights_only=False``, i.e. running whatever code
    the file carries; an optimizer state never needs that, so the text is never passed on.
    """
    delete = f"delete {path.parent} to resume from an older checkpoint"
    if not path.is_file():
        raise RunDirError(f"{path}: optimizer state not found; {delete}")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError:
        raise RunDirError(f"{path}: refused: it holds objects other than tensors and numbers (possibly code); {delete}") from None
    except Exception as e:  # noqa: BLE001 - zip, EOF and pickle errors come in many types; none is worth a traceback
        raise RunDirError(f"{path}: unreadable optimizer state ({type(e).__name__}); {delete}") from None
    if not isinstance(state, dict) or "state" not in state or "param_groups" not in state:
        raise RunDirError(f"{path}: not an optimizer state (no 'state'/'param_groups'); {delete}")
    return state


def load_checkpoint(path: Path, model: torch.nn.Module, device: torch.device | str = "cpu") -> LoadedCheckpoint:
    """Load weights into ``model`` and return the optimizer state, RNG state and trainer state."""
    path = Path(path)
    rundir.load_weights(path / rundir.WEIGHTS_FILE, model)
    state = rundir.read_json(path / STATE_FILE)
    optimizer_state = _load_optimizer_state(path / OPTIMIZER_FILE, device)
    rng = rundir.load_tensors(path / RNG_FILE) if (path / RNG_FILE).is_file() else {}
    return LoadedCheckpoint(path=path, state=state, optimizer_state=optimizer_state, rng=rng)
