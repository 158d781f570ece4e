"""Weights-only snapshots at log-spaced steps, kept for good: the raw material of
``tinyinterp analyze emergence`` (how neuron roles and head classes appear during training).

Checkpoints serve resuming (weights + AdamW state, only the last K kept); snapshots serve analysis:
``snapshots/step_XXXXXXXX/model.safetensors`` (checksummed like every weights file), written at the
steps ``round(2^(i/n))`` for i = 0, 1, 2, … with ``n = snapshots_per_octave`` — e.g. n = 2 gives steps
1, 2, 3, 4, 6, 8, 11, 16, 23, 32, 45, 64, … — so early training, where roles form fastest, is sampled
densely, and a whole run costs ~n·log2(steps) weight files. They are listed by
:func:`tinyinterp.runs.checkpoints.list_checkpoints` (kind ``"snapshot"``).
"""

from __future__ import annotations

import math
from pathlib import Path

from tinyinterp.runs import rundir
from tinyinterp.runs.layout import WEIGHTS_FILE, snapshot_dir


def is_snapshot_step(step: int, per_octave: int) -> bool:
    """Whether ``step`` (≥ 1) is one of ``round(2^(i/per_octave))``."""
    if per_octave <= 0 or step < 1:
        return False
    center = round(per_octave * math.log2(step))
    return any(round(2 ** (i / per_octave)) == step for i in range(max(0, center - 1), center + 2))


def snapshot_steps(max_step: int, per_octave: int) -> list[int]:
    """All snapshot steps up to ``max_step``, ascending."""
    return [s for s in range(1, max_step + 1) if is_snapshot_step(s, per_octave)]


def save_snapshot(run_dir: Path, step: int, model) -> Path:
    """Write the weights of ``step`` (atomically: a reader never sees half a file)."""
    folder = snapshot_dir(run_dir, step)
    folder.mkdir(parents=True, exist_ok=True)
    rundir.save_weights(folder / WEIGHTS_FILE, model)
    return folder
