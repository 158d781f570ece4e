"""Log-spaced weight snapshots, and `tinyinterp analyze emergence` over them (cached, resumable)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyinterp.runs.checkpoints import ALL_KINDS, SNAPSHOT, list_checkpoints
from training.snapshots import is_snapshot_step, snapshot_steps
from training.train import main


def test_schedule_is_log_spaced():
    assert snapshot_steps(70, 2) == [1, 2, 3, 4, 6, 8, 11, 16, 23, 32, 45, 64]
    assert snapshot_steps(20, 1) == [1, 2, 4, 8, 16]
    assert snapshot_steps(100, 0) == []


@given(per_octave=st.integers(1, 6), step=st.integers(1, 100_000))
def test_schedule_membership_agrees_with_the_definition(per_octave, step):
    import math

    members = {round(2 ** (i / per_octave)) for i in range(0, int(per_octave * math.log2(step)) + 3)}
    assert is_snapshot_step(step, per_octave) == (step in members)


@pytest.fixture
def snapshot_run(tmp_path, train_args):
    run = tmp_path / "run"
    assert main([*train_args, "--out", str(run), "--max-steps", "12", "--snapshots-per-octave", "1", "--keep-last", "1",
                 "--ckpt-every", "5", "--eval-every", "4", "--log-every", "4"]) == 0
    return run


def test_snapshots_survive_checkpoint_pruning(snapshot_run):
    assert [c.step for c in list_checkpoints(snapshot_run, kinds=[SNAPSHOT])] == [1, 2, 4, 8]


def test_emergence_analyses_every_state_once(snapshot_run, capsys):
    from tinyinterp.cli import main as cli

    from tinyinterp.interp.emergence import EmergenceResult

    states = list_checkpoints(snapshot_run, kinds=ALL_KINDS)
    # --keep-last 1 pruned the checkpoint of step 5 and 10; the one of step 12 is the final weights.
    assert [(c.step, c.kind) for c in states] == [(1, "snapshot"), (2, "snapshot"), (4, "snapshot"), (8, "snapshot"),
                                                 (12, "final")]
    args = ["analyze", "emergence", str(snapshot_run), "--max-docs", "20", "--n-samples", "8", "--seq-len", "24",
            "--no-progress"]
    assert cli(args) == 0
    out = snapshot_run / "analysis" / "emergence"
    result = EmergenceResult.load(out)
    frame = result.to_frame()
    assert frame["step"].tolist() == [1, 2, 4, 8, 12]
    assert frame["tokens"].tolist() == [s * 8 * 32 for s in (1, 2, 4, 8, 12)]
    n_heads = 2 * 4
    assert (frame[["local", "semantic", "mixed"]].sum(axis=1) == n_heads).all()
    assert (out / "emergence.png").stat().st_size > 1000
    assert result.head_track(1, 2)["head_class"].isin(["local", "semantic", "mixed"]).all()
    neuron = result.neuron_track(0, 5)
    assert len(neuron) == 5 and len(neuron["top_tokens"][0]) == 20
    assert result.patterns(12)["prompt_0"].shape[:2] == (2, 4)
    # Different weights give different neurons: the analysis really ran per checkpoint.
    assert neuron["max_activation"].nunique() > 1

    # A rerun analyses nothing new (summaries untouched); a deleted step is redone alone.
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("step_*/summary.json")}
    (out / "step_00000004" / "summary.json").unlink()
    assert cli(args) == 0
    after = {p: p.stat().st_mtime_ns for p in out.glob("step_*/summary.json")}
    changed = [p.parent.name for p in after if stamps.get(p) != after[p]]
    assert changed == ["step_00000004"]
    assert json.loads((out / "step_00000004" / "summary.json").read_text())["step"] == 4
    printed = capsys.readouterr().out
    assert "role_share" in printed and "emergence ->" in printed


def test_emergence_without_a_run_is_one_line(tmp_path, capsys):
    from tinyinterp.cli import main as cli

    assert cli(["analyze", "emergence", str(tmp_path)]) == 2
    assert "needs a run directory" in capsys.readouterr().err
