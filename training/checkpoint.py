"""Atomic training checkpoints: ``checkpoints/step_XXXXXXXX/`` appears whole or not at all.

A checkpoint is written into a hidden temp folder ``checkpoints/.tmp-step_XXXXXXXX-<pid>/``
(``config.json``, ``tokenizer.json``, ``model.safetensors``, ``optimizer.pt``, ``rng.safetensors``
and, last, ``state.json``), fsynced, and then renamed into place; a rename is atomic on POSIX,
so a crash (even ``kill -9``) mid-write leaves only a temp folder, which
:func:`tinyinterp.runs.checkpoints.latest_checkpoint` never picks and :func:`remove_stale_temp_dirs` deletes. Weights are
safetensors; the optimizer state goes through ``torch.save`` and is read back with
``torch.load(weights_only=True)`` (plain tensors, numbers and lists only, no pickled code); a file
holding anything else is refused with one line that says to delete the checkpoint, never with
torch's own advice to disable the check. ``state.json`` records the sha256 of ``optimizer.pt``'s bytes
(``optimizer_sha256``), checked before the file is parsed, as the weights' checksum is; checkpoints written
before it existed resume unchecked. A bad checkpoint's message names its folder and the checkpoint a
resume falls back to once it is deleted. Listing checkpoints is :mod:`tinyinterp.runs.checkpoints`. Re-saving an existing step swaps folders through a
``.tmp-old-`` name; if a kill lands between the two renames, :func:`remove_stale_temp_dirs` puts
the old folder back instead of deleting it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tinyinterp.runs import rundir
from tinyinterp.io.atomic import atomic_write_json
from tinyinterp.runs.checkpoints import list_checkpoints
from tinyinterp.errors import RunDirError
from tinyinterp.runs.layout import (
    CHECKPOINTS_DIR,
    CONFIG_FILE,
    OPTIMIZER_CHECKSUM_KEY,
    OPTIMIZER_FILE,
    RNG_FILE,
    STATE_FILE,
    TEMP_PREFIX,
    TOKENIZER_FILE,
    WEIGHTS_FILE,
    step_name,
)

log = logging.getLogger(__name__)

_OLD_SWAP_PREFIX = f"{TEMP_PREFIX}old-"


def checkpoint_name(step: int) -> str:
    return step_name(step)


_OLD_SWAP = re.compile(rf"^{re.escape(_OLD_SWAP_PREFIX)}(step_\d{{8}})-\d+$")


def remove_stale_temp_dirs(run_dir: Path) -> None:
    """Delete temp folders left by checkpoint writes that were interrupted (restoring a half-swapped one)."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    if root.is_dir():
        for path in sorted(root.iterdir()):
            swapped = _OLD_SWAP.match(path.name)
            if swapped and not (root / swapped.group(1)).exists() and (path / STATE_FILE).is_file():
                log.info("restoring %s: its replacement was interrupted", swapped.group(1))
                os.replace(path, root / swapped.group(1))
                continue
            if path.name.startswith(TEMP_PREFIX):
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
    root = Path(run_dir) / CHECKPOINTS_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(step)
    tmp = root / f"{TEMP_PREFIX}{checkpoint_name(step)}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        if tokenizer is not None:
            tokenizer.save(tmp / TOKENIZER_FILE)
        rundir.save_weights(tmp / WEIGHTS_FILE, model)
        with open(tmp / OPTIMIZER_FILE, "wb") as f:
            torch.save(optimizer.state_dict(), f)
            f.flush()
            os.fsync(f.fileno())
        optimizer_digest = file_sha256(tmp / OPTIMIZER_FILE)  # of the bytes on disk: what a resume will read
        rundir.atomic_save_tensors(tmp / RNG_FILE, rng_state())
        atomic_write_json(tmp / CONFIG_FILE, config)
        atomic_write_json(tmp / STATE_FILE, {**state, "step": step, OPTIMIZER_CHECKSUM_KEY: optimizer_digest})  # last: marks the folder complete
        _fsync_dir(tmp)
        if final.exists():  # re-saving a step (a resumed run ending where it started): swap, then delete
            old = root / f"{_OLD_SWAP_PREFIX}{checkpoint_name(step)}-{os.getpid()}"
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
    for old in found[:-keep_last] if keep_last > 0 else found:
        shutil.rmtree(old.folder, ignore_errors=True)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class LoadedCheckpoint:
    path: Path
    state: dict[str, Any]
    optimizer_state: dict[str, Any]
    rng: dict[str, torch.Tensor]


def _delete_advice(folder: Path) -> str:
    """What to do about a bad checkpoint: remove its folder (never "use a checkpoint" pointing back at it)."""
    older = [c for c in list_checkpoints(folder.parent.parent) if c.folder != folder]
    if older:
        return f"delete {folder} to resume from the previous checkpoint ({older[-1].folder.name})"
    return f"delete {folder} to start the run over (it has no older checkpoint)"


def _load_optimizer_state(path: Path, device: torch.device | str, recorded_sha256: str | None = None) -> dict[str, Any]:
    """``torch.load(weights_only=True)``; every failure becomes one line of our own.

    With ``recorded_sha256`` (``state.json`` of checkpoints written since the optimizer state got a
    checksum) the file's bytes are checked first, so a damaged or replaced file is never parsed.
    torch's messages for a refused file recommend ``weights_only=False``, i.e. running whatever code
    the file carries; an optimizer state never needs that, so the text is never passed on.
    """
    delete = _delete_advice(path.parent)
    if not path.is_file():
        raise RunDirError(f"{path}: optimizer state not found; {delete}")
    if recorded_sha256 is not None and file_sha256(path) != recorded_sha256:
        raise RunDirError(f"{path}: refused: its bytes do not match the sha256 recorded in {STATE_FILE} when it was "
                          f"written (damaged on disk or replaced); {delete}")
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
    try:
        rundir.load_weights(path / WEIGHTS_FILE, model)
        state = rundir.read_json(path / STATE_FILE)
        if not isinstance(state, dict):
            raise RunDirError(f"{path / STATE_FILE}: not a JSON object")
        recorded = state.get(OPTIMIZER_CHECKSUM_KEY)
        optimizer_state = _load_optimizer_state(path / OPTIMIZER_FILE, device, recorded if isinstance(recorded, str) else None)
        rng = rundir.load_tensors(path / RNG_FILE) if (path / RNG_FILE).is_file() else {}
    except RunDirError as e:
        message = str(e)
        if "; delete " not in message:  # the file's own advice ("use a checkpoint from checkpoints/") points back here
            message = message.split("; restore it")[0] + f"; {_delete_advice(path)}"
        raise type(e)(message) from None  # keep the subclass (CorruptWeightsError...)
    return LoadedCheckpoint(path=path, state=state, optimizer_state=optimizer_state, rng=rng)
