"""The saved states of a run: training checkpoints, weight snapshots and the final weights, listed one way.

One :class:`Checkpoint` type and one lister serve resuming (the trainer), evaluation over checkpoints,
``analyze emergence``, ``tinyinterp info|generate`` on a run still being trained, and the app. Reads only
file names and small JSON files (no torch): listing is cheap and safe to do from a reader.

* a **checkpoint** is ``checkpoints/step_XXXXXXXX/`` with ``model.safetensors`` and ``state.json``
  (written last, so a folder without it is an interrupted write and never listed);
* a **snapshot** is ``snapshots/step_XXXXXXXX/model.safetensors`` (weights only);
* the **final** weights are ``RUN/model.safetensors``, their step and tokens from ``config.json``'s ``result``
  (or, for runs saved without one, the newest step in ``metrics.jsonl``).

Tokens seen are read from one key, ``tokens`` (``state.json`` of a checkpoint, ``result`` of the final weights).

    >>> [(c.step, c.kind) for c in list_checkpoints("runs/demo", kinds=ALL_KINDS)]
    [(1, 'snapshot'), (2, 'snapshot'), ..., (500, 'final')]
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinyinterp.runs import layout

CHECKPOINT, SNAPSHOT, FINAL = "checkpoint", "snapshot", "final"
ALL_KINDS = (SNAPSHOT, FINAL, CHECKPOINT)
"""Every kind, in the order of preference when two kinds exist for one step (they hold the same weights)."""
FINAL_TAG = "final"


@dataclass
class Checkpoint:
    """One saved state of a run: which weights file, of what kind, at which step and tokens."""

    weights: Path
    """The safetensors file holding the weights."""
    kind: str = FINAL
    """``"checkpoint"``, ``"snapshot"`` or ``"final"``."""
    step: int | None = None
    tokens_seen: int | None = None
    tag: str = ""
    """Short name of this state in file names (``final``, ``step_00000012``, ``snapshot-step_00000004``)."""

    def __post_init__(self) -> None:
        self.weights = Path(self.weights)
        if not self.tag:
            if self.kind == FINAL or self.step is None:
                self.tag = FINAL_TAG
            elif self.kind == SNAPSHOT:
                self.tag = f"snapshot-{layout.step_name(self.step)}"
            else:
                self.tag = layout.step_name(self.step)

    @property
    def folder(self) -> Path:
        """The folder holding the weights (a checkpoint folder is a loadable run directory too)."""
        return self.weights.parent


def _read_json_object(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def tokens_seen(record: dict[str, Any] | None) -> int | None:
    """Training tokens recorded in a ``state.json`` or a ``result`` section (None when absent or not a number)."""
    value = (record or {}).get(layout.STATE_TOKENS_KEY)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return None
    return int(value)


def _training_checkpoints(run_dir: Path) -> list[Checkpoint]:
    found = []
    for step, folder in layout.step_folders(layout.checkpoints_dir(run_dir)):
        weights, state_path = folder / layout.WEIGHTS_FILE, folder / layout.STATE_FILE
        if weights.is_file() and state_path.is_file():
            found.append(Checkpoint(weights, CHECKPOINT, step, tokens_seen(_read_json_object(state_path))))
    return found


def _snapshots(run_dir: Path) -> list[Checkpoint]:
    return [Checkpoint(folder / layout.WEIGHTS_FILE, SNAPSHOT, step)
            for step, folder in layout.step_folders(layout.snapshots_dir(run_dir))
            if (folder / layout.WEIGHTS_FILE).is_file()]


def final_weights(run_dir: Path) -> Checkpoint | None:
    """The final weights of a finished run (step and tokens from ``config.json``'s ``result``), else None."""
    weights = Path(run_dir) / layout.WEIGHTS_FILE
    if not weights.is_file():
        return None
    config = _read_json_object(Path(run_dir) / layout.CONFIG_FILE) or {}
    result = config.get("result") if isinstance(config.get("result"), dict) else {}
    steps = result.get("steps")
    step = steps if isinstance(steps, int) and not isinstance(steps, bool) and steps >= 0 else None
    tokens = tokens_seen(result)
    if step is None:  # saved without a result section (older or hand-made runs): the newest step logged
        last = _last_logged_step(Path(run_dir) / layout.METRICS_FILE)
        if last is not None:
            step, tokens = last["step"], tokens if tokens is not None else tokens_seen(last)
    return Checkpoint(weights, FINAL, step, tokens)


def _last_logged_step(path: Path) -> dict[str, Any] | None:
    """The record of the highest ``step`` in a metrics log (unreadable lines skipped), or None."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    best: dict[str, Any] | None = None
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        step = record.get("step") if isinstance(record, dict) else None
        if isinstance(step, int) and not isinstance(step, bool) and step >= 0 and (best is None or step >= best["step"]):
            best = record
    return best


def list_checkpoints(run_dir: str | Path, kinds: Iterable[str] = (CHECKPOINT,)) -> list[Checkpoint]:
    """The saved states of ``run_dir`` of the given ``kinds``, oldest first.

    With several kinds, one state per step (the first of :data:`ALL_KINDS` wins: a snapshot and the
    final weights of one step hold the same weights); a final state of unknown step comes last.
    """
    run_dir = Path(run_dir)
    kinds = tuple(kinds)
    unknown = set(kinds) - set(ALL_KINDS)
    if unknown:
        raise ValueError(f"unknown checkpoint kinds {sorted(unknown)}; choose from {ALL_KINDS}")
    by_step: dict[int, Checkpoint] = {}
    tail: list[Checkpoint] = []
    for kind in sorted(kinds, key=ALL_KINDS.index, reverse=True):  # preferred kinds last: they overwrite
        if kind == CHECKPOINT:
            found = _training_checkpoints(run_dir)
        elif kind == SNAPSHOT:
            found = _snapshots(run_dir)
        else:
            final = final_weights(run_dir)
            found = [final] if final is not None else []
        for c in found:
            if c.step is None:
                tail.append(c)
            else:
                by_step[c.step] = c
    return [by_step[s] for s in sorted(by_step)] + tail


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """Folder of the newest complete training checkpoint, or None (interrupted writes never qualify)."""
    found = _training_checkpoints(Path(run_dir))
    return found[-1].folder if found else None
