"""tinyinterp.runs.checkpoints: one lister for checkpoints, snapshots and final weights; tokens read from one key."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinyinterp.runs import layout
from tinyinterp.runs.checkpoints import (ALL_KINDS, CHECKPOINT, FINAL, SNAPSHOT, Checkpoint, latest_checkpoint,
                                    list_checkpoints)


def _checkpoint(run, step, tokens=None, complete=True):
    folder = layout.checkpoint_dir(run, step)
    folder.mkdir(parents=True)
    (folder / layout.WEIGHTS_FILE).write_bytes(b"w")
    if complete:
        (folder / layout.STATE_FILE).write_text(json.dumps({"step": step, "tokens": tokens}))
    return folder


def _snapshot(run, step):
    folder = layout.snapshot_dir(run, step)
    folder.mkdir(parents=True)
    (folder / layout.WEIGHTS_FILE).write_bytes(b"w")


def _final(run, steps, tokens):
    (run / layout.WEIGHTS_FILE).write_bytes(b"w")
    (run / layout.CONFIG_FILE).write_text(json.dumps({"model": {}, "result": {"steps": steps, "tokens": tokens}}))


def test_kinds_are_listed_one_per_step(tmp_path):
    for step in (4, 8, 12):
        _checkpoint(tmp_path, step, tokens=step * 100)
    _checkpoint(tmp_path, 16, complete=False)  # no state.json: an interrupted write
    for step in (1, 2, 4, 8):
        _snapshot(tmp_path, step)
    _final(tmp_path, 12, 1200)
    assert [(c.step, c.kind) for c in list_checkpoints(tmp_path)] == [(4, CHECKPOINT), (8, CHECKPOINT), (12, CHECKPOINT)]
    assert [c.tokens_seen for c in list_checkpoints(tmp_path)] == [400, 800, 1200]
    every = list_checkpoints(tmp_path, kinds=ALL_KINDS)
    assert [(c.step, c.kind) for c in every] == [(1, SNAPSHOT), (2, SNAPSHOT), (4, SNAPSHOT), (8, SNAPSHOT), (12, FINAL)]
    final = every[-1]
    assert final.tokens_seen == 1200 and final.tag == "final" and final.weights == tmp_path / layout.WEIGHTS_FILE
    assert latest_checkpoint(tmp_path) == layout.checkpoint_dir(tmp_path, 12)


def test_final_weights_without_a_result_take_the_newest_logged_step(tmp_path):
    (tmp_path / layout.WEIGHTS_FILE).write_bytes(b"w")
    (tmp_path / layout.CONFIG_FILE).write_text(json.dumps({"model": {}}))
    (tmp_path / layout.METRICS_FILE).write_text('{"step": 5, "tokens": 50}\nnot json\n{"step": 9, "tokens": 90}\n{"st')
    (final,) = list_checkpoints(tmp_path, kinds=[FINAL])
    assert (final.step, final.tokens_seen) == (9, 90)


def test_tags_and_folders():
    c = Checkpoint(layout.checkpoint_dir("run", 3) / layout.WEIGHTS_FILE, CHECKPOINT, 3)
    assert c.tag == "step_00000003" and c.folder == layout.checkpoint_dir("run", 3)
    assert Checkpoint("run/model.safetensors").tag == "final"
    assert Checkpoint("x/model.safetensors", tag="custom").tag == "custom"


@pytest.mark.parametrize("tokens", ["many", None, True, float("nan")])
def test_tokens_that_are_not_numbers_read_as_unknown(tmp_path, tokens):
    folder = _checkpoint(tmp_path, 2)
    (folder / layout.STATE_FILE).write_text(json.dumps({"step": 2, "tokens": tokens}))
    assert list_checkpoints(tmp_path)[0].tokens_seen is None


def test_unknown_kinds_are_refused(tmp_path):
    with pytest.raises(ValueError, match="kinds"):
        list_checkpoints(tmp_path, kinds=["weights"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.sets(st.integers(0, 10**6), max_size=6), torn=st.sets(st.integers(0, 10**6), max_size=3))
def test_the_latest_complete_checkpoint_is_the_highest_step(tmp_path_factory, steps, torn):
    run = tmp_path_factory.mktemp("run")
    for s in steps:
        _checkpoint(run, s, tokens=s)
    for s in torn - steps:
        _checkpoint(run, s, complete=False)
    (layout.checkpoints_dir(run) / f"{layout.TEMP_PREFIX}step_99999999-1").mkdir(parents=True, exist_ok=True)
    assert [c.step for c in list_checkpoints(run)] == sorted(steps)
    assert latest_checkpoint(run) == (layout.checkpoint_dir(run, max(steps)) if steps else None)
