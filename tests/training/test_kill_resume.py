"""metrics.jsonl after kills: every step exactly once, every line parses, a torn tail is cut before appending.

The slow test kills a real training subprocess with SIGKILL at random moments (before the first
checkpoint, mid-run, possibly while a checkpoint folder is being written) and resumes; the fast ones
rebuild the states such kills leave (a checkpoint write that never finished, a half-written line, a
log damaged by an older version) in-process.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import sys
import time
from pathlib import Path

import pytest

from tinyinterp.runs import rundir
from tinyinterp.runs.checkpoints import latest_checkpoint
from tinyinterp.io.jsonl import read_jsonl
from training import checkpoint as ckpt
from training.train import main

def _strict_steps(run: Path) -> list[int]:
    """Steps of metrics.jsonl, requiring every line to be a complete JSON object ending in a newline."""
    text = (run / rundir.METRICS_FILE).read_text(encoding="utf-8")
    assert text.endswith("\n"), "last line is torn"
    return [json.loads(line)["step"] for line in text.splitlines()]


def test_checkpoint_write_killed_before_the_first_checkpoint_logs_each_step_once(tmp_path, train_args, monkeypatch):
    out = tmp_path / "run"
    common = [*train_args, "--out", str(out), "--ckpt-every", "4", "--eval-every", "4", "--log-every", "1"]

    def killed(*args, **kwargs):  # the process dies inside its first checkpoint write, after steps 1-4 were logged
        raise KeyboardInterrupt("simulated kill -9")

    monkeypatch.setattr(ckpt.torch, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        main([*common, "--max-steps", "6"])
    monkeypatch.undo()
    assert latest_checkpoint(out) is None
    assert _strict_steps(out) == [1, 2, 3, 4]

    assert main([*common, "--max-steps", "6"]) == 0  # starts over from step 0
    assert _strict_steps(out) == list(range(1, 7))


def test_torn_last_line_is_cut_before_the_next_record_is_appended(tmp_path, train_args):
    out = tmp_path / "run"
    common = [*train_args, "--out", str(out), "--ckpt-every", "4", "--eval-every", "4", "--log-every", "1"]
    assert main([*common, "--max-steps", "4"]) == 0
    with open(out / rundir.METRICS_FILE, "ab") as f:  # killed halfway through writing step 5's record
        f.write(b'{"step": 5, "tokens": 17')
    assert [r["step"] for r in read_jsonl(out / rundir.METRICS_FILE)] == [1, 2, 3, 4]  # readers tolerate it

    assert main([*common, "--max-steps", "7"]) == 0
    assert _strict_steps(out) == list(range(1, 8))


def test_log_damaged_by_an_older_version_heals_on_resume(tmp_path, train_args):
    out = tmp_path / "run"
    common = [*train_args, "--out", str(out), "--ckpt-every", "2", "--eval-every", "2", "--log-every", "1"]
    assert main([*common, "--max-steps", "4"]) == 0
    lines = (out / rundir.METRICS_FILE).read_text().splitlines()
    # What the old code left: a record appended onto a torn line, and steps logged twice.
    damaged = [lines[0], lines[1][:20] + lines[1], lines[0], lines[1], *lines[2:]]
    (out / rundir.METRICS_FILE).write_text("\n".join(damaged) + "\n")

    assert main([*common, "--max-steps", "6"]) == 0
    assert _strict_steps(out) == list(range(1, 7))


def test_kill_between_the_two_renames_of_a_resave_keeps_the_old_checkpoint(tmp_path, train_args):
    out = tmp_path / "run"
    common = [*train_args, "--out", str(out), "--ckpt-every", "2", "--eval-every", "2", "--log-every", "1", "--keep-last", "1"]
    assert main([*common, "--max-steps", "2"]) == 0
    final = latest_checkpoint(out)
    # Re-saving step 2 moves the old folder aside first; a kill right then leaves only the moved-aside copy.
    final.rename(final.parent / f".tmp-old-{final.name}-99999")
    ckpt.remove_stale_temp_dirs(out)
    assert latest_checkpoint(out) == final
    assert main([*common, "--max-steps", "4"]) == 0
    assert _strict_steps(out) == [1, 2, 3, 4]


def _train(argv: list[str]) -> None:
    sys.exit(main(argv))


def _start(ctx, args: list[str], out: Path):
    proc = ctx.Process(target=_train, args=([*args, "--out", str(out)],))
    proc.start()
    return proc


def _kill_when(proc, ready, delay_s: float, timeout_s: float = 180) -> bool:
    """Wait until ``ready()`` (training has started), sleep ``delay_s``, SIGKILL; False if it finished first."""
    deadline = time.monotonic() + timeout_s
    try:
        while not ready():
            if not proc.is_alive():  # a resume that only re-logs steps already counted can finish unseen
                assert proc.exitcode == 0, f"training exited with {proc.exitcode}"
                return False
            assert time.monotonic() < deadline, "training never started"
            time.sleep(0.002)
        time.sleep(delay_s)
        if not proc.is_alive():
            return False
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(timeout=30)
        if proc.exitcode == 0:  # it finished in the instant before the signal
            return False
        assert proc.exitcode == -signal.SIGKILL
        return True
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join()


@pytest.mark.slow
def test_kill9_at_random_moments_then_resume_logs_every_step_exactly_once(tmp_path, train_args):
    # Real processes killed with SIGKILL. They fork from a server that has imported the trainer once,
    # so a round costs milliseconds instead of a fresh interpreter's imports (~15 s on a loaded CI box).
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["training.train", "torch._dynamo", __name__])  # AdamW imports torch._dynamo: ~6 s
    out, max_steps = tmp_path / "run", 150
    args = [*train_args, "--max-steps", str(max_steps), "--ckpt-every", "5", "--eval-every", "5", "--log-every", "1",
            "--threads", "1"]
    metrics = out / rundir.METRICS_FILE
    rng = random.Random(int(os.environ.get("KILL_TEST_SEED", "0")))
    # Kill 1: at the first metrics line, before any checkpoint exists; then at random moments, counted in
    # steps (1-8 new records, then a random fraction of a step) so a fast machine is interrupted as surely as
    # a slow one: a wall-clock delay would let a quick run finish before the signal.
    rounds = int(os.environ.get("KILL_TEST_ROUNDS", "5"))
    plan = [(1, 0.0)] + [(rng.randint(1, 8), rng.uniform(0.0, 0.03)) for _ in range(rounds)]
    kills = 0
    for i, (new_records, delay) in enumerate(plan):
        before = len(read_jsonl(metrics))
        ready = lambda: len(read_jsonl(metrics)) >= before + new_records  # noqa: E731
        if not _kill_when(_start(ctx, args, out), ready, delay):
            break  # it finished before the kill: nothing left to interrupt
        kills += 1
        lines = metrics.read_text().split("\n")
        for line in lines[:-1]:  # whatever the kill left, only the last line may be unfinished
            json.loads(line)
        if i == 0:
            assert [p.name for p in (out / rundir.CHECKPOINTS_DIR).glob("step_*")] in ([], ["step_00000005"])
    assert kills >= min(3, len(plan))
    proc = _start(ctx, args, out)
    proc.join(timeout=300)
    assert proc.exitcode == 0
    assert _strict_steps(out) == list(range(1, max_steps + 1))
