"""tinyinterp.runs.layout: the one owner of run-directory names; light enough for the app and `--help`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from tinyinterp.runs import layout

REPO_ROOT = Path(__file__).resolve().parents[3]


@given(step=st.integers(0, 10**8 - 1))
def test_step_names_round_trip(step):
    name = layout.step_name(step)
    assert len(name) == 13 and layout.parse_step_name(name) == step


@given(name=st.text(min_size=0, max_size=20))
def test_only_exact_step_names_parse(name):
    step = layout.parse_step_name(name)
    assert step is None or layout.step_name(step) == name


def test_step_folders_skip_temp_and_stray_entries(tmp_path):
    for name in ("step_00000002", "step_00000010", ".tmp-step_00000011-123", "step_12", "notes"):
        (tmp_path / name).mkdir()
    (tmp_path / "step_00000003").write_text("a file, not a folder")
    assert [s for s, _ in layout.step_folders(tmp_path)] == [2, 10]
    assert layout.step_folders(tmp_path / "missing") == []


def test_names_are_those_of_earlier_runs(tmp_path):
    # Old run directories load unchanged: the names moved, their values did not.
    assert (layout.CONFIG_FILE, layout.WEIGHTS_FILE, layout.METRICS_FILE, layout.STATE_FILE, layout.OPTIMIZER_FILE) == (
        "config.json", "model.safetensors", "metrics.jsonl", "state.json", "optimizer.pt")
    assert layout.checkpoint_dir(tmp_path, 7) == tmp_path / "checkpoints" / "step_00000007"
    assert layout.snapshot_dir(tmp_path, 7) == tmp_path / "snapshots" / "step_00000007"
    assert layout.corpus_dir(tmp_path) == tmp_path / "data" / "train"
    assert layout.eval_dir(tmp_path) == tmp_path / "analysis" / "eval"


def test_analysis_dir_accepts_a_run_or_an_analysis_folder(tmp_path):
    assert layout.analysis_dir(tmp_path) == tmp_path / "analysis"
    (tmp_path / "neurons").mkdir()
    assert layout.analysis_dir(tmp_path) == tmp_path


def test_importing_the_layout_loads_no_torch():
    code = "import sys, tinyinterp.runs.layout, tinyinterp.runs.checkpoints; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
