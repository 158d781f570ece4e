"""One writer per run directory: a second trainer gets one line naming the holder; a killed holder's lock is taken over."""

from __future__ import annotations

import json
import os
import signal

import pytest

from tests.support.lock_holder import start_lock_holder
from tinyinterp.runs import rundir
from tinyinterp.runs.lock import LOCK_FILE, RunDirLockedError, lock_run_dir
from training.train import main


def test_second_writer_is_refused_and_a_killed_holders_lock_is_taken_over(tmp_path, train_args, capsys):
    out = tmp_path / "run"
    holder = start_lock_holder(out)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirLockedError, match=f"pid {holder.pid} "):
            with lock_run_dir(out):
                pass
        assert main([*train_args, "--out", str(out), "--max-steps", "2"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and f"in use by pid {holder.pid}" in err
        assert not (out / rundir.METRICS_FILE).exists()  # the refused trainer wrote nothing

        os.kill(holder.pid, signal.SIGKILL)  # dies holding the lock: its pid stays in the lock file
        holder.wait(timeout=30)
        assert json.loads((out / LOCK_FILE).read_text())["pid"] == holder.pid
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        holder.stdout.close()
    assert main([*train_args, "--out", str(out), "--max-steps", "2"]) == 0  # the stale lock is no obstacle
    assert (out / LOCK_FILE).read_text() == ""  # released cleanly: no holder recorded


def test_lock_is_reentrant_within_one_process(tmp_path):
    with lock_run_dir(tmp_path):
        with lock_run_dir(tmp_path):  # run_training holds it, Trainer.fit takes it again
            assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    with lock_run_dir(tmp_path):
        pass
