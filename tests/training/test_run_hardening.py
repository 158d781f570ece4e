"""Hardening of run directories (issue 18): optimizer checksum, full disk on the final weights, a deleted lock
file, an interrupted run in `info`/`generate`, the bad-checkpoint advice, a metrics.jsonl that is a folder."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError

from tests.support.lock_holder import start_lock_holder
from tinyinterp.runs import rundir
from tinyinterp.runs.checkpoints import latest_checkpoint, list_checkpoints
from tinyinterp.runs.layout import LOCK_FILE, OPTIMIZER_CHECKSUM_KEY, OPTIMIZER_FILE, STATE_FILE
from tinyinterp.runs.lock import RunDirLockedError, lock_run_dir
from training.train import main


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in "\n".join(err), err
    return errors[0]


def _run(tmp_path, train_args, steps: int, name: str = "run", every: int = 2) -> tuple[Path, list[str]]:
    out = tmp_path / name
    common = [*train_args, "--out", str(out), "--ckpt-every", str(every), "--eval-every", str(every), "--keep-last", "3"]
    assert main([*common, "--max-steps", str(steps)]) == 0
    return out, common


def test_corrupt_optimizer_state_is_refused_by_its_checksum(tmp_path, train_args, capsys):
    out, common = _run(tmp_path, train_args, 2)
    ckpt = latest_checkpoint(out)
    data = bytearray((ckpt / OPTIMIZER_FILE).read_bytes())
    # Flip one bit in the middle of the tensor data: torch.load would read the damaged numbers without a word.
    data[len(data) // 2] ^= 0x01
    (ckpt / OPTIMIZER_FILE).write_bytes(bytes(data))
    capsys.readouterr()
    assert main([*common, "--max-steps", "4"]) == 2
    line = _one_line_error(capsys)
    assert str(ckpt / OPTIMIZER_FILE) in line and "sha256" in line and "delete" in line
    assert len(json.loads((ckpt / STATE_FILE).read_text())[OPTIMIZER_CHECKSUM_KEY]) == 64  # recorded in state.json


def test_checkpoints_without_an_optimizer_checksum_still_resume(tmp_path, train_args):
    out, common = _run(tmp_path, train_args, 2)
    ckpt = latest_checkpoint(out)
    state = json.loads((ckpt / STATE_FILE).read_text())
    state.pop(OPTIMIZER_CHECKSUM_KEY, None)  # as written by earlier releases
    (ckpt / STATE_FILE).write_text(json.dumps(state))
    assert main([*common, "--max-steps", "4"]) == 0
    assert [c.step for c in list_checkpoints(out)] == [2, 4]


def test_full_disk_on_the_final_weights_is_one_line_and_resume_is_bit_identical(tmp_path, train_args, capsys,
                                                                                 monkeypatch):
    straight, common_straight = _run(tmp_path, train_args, 4, name="straight")
    out = tmp_path / "full"
    common = [*train_args, "--out", str(out), "--ckpt-every", "2", "--eval-every", "2", "--keep-last", "3"]
    real_save = rundir.save_file

    def disk_full_at_the_root(tensors, filename, metadata=None):
        if Path(filename).parent == out:  # the final model.safetensors (checkpoints live in sub-folders)
            Path(filename).write_bytes(b"\0" * 64)
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        return real_save(tensors, filename, metadata=metadata)

    monkeypatch.setattr(rundir, "save_file", disk_full_at_the_root)
    capsys.readouterr()
    assert main([*common, "--max-steps", "4"]) == 2
    line = _one_line_error(capsys)
    assert "No space left on device" in line and "free space" in line
    assert not (out / rundir.WEIGHTS_FILE).exists() and not list(out.glob(".*tmp*"))  # no half-written file left
    monkeypatch.undo()
    assert main([*common, "--max-steps", "4"]) == 0  # space freed: the rerun finishes from the intact checkpoint
    a, b = rundir.load_tensors(straight / rundir.WEIGHTS_FILE), rundir.load_tensors(out / rundir.WEIGHTS_FILE)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)




def test_deleting_the_lock_file_does_not_let_a_second_writer_in(tmp_path, train_args, capsys):
    out = tmp_path / "run"
    holder = start_lock_holder(out)
    try:
        assert holder.stdout.readline().strip() == "locked"
        (out / LOCK_FILE).unlink()  # by hand, while the holder runs
        try:
            with lock_run_dir(out):
                raise AssertionError("a second process took the lock of a run that is held")
        except RunDirLockedError:
            pass
        capsys.readouterr()
        assert main([*train_args, "--out", str(out), "--max-steps", "2"]) == 2
        assert "in use by" in _one_line_error(capsys)
        assert not (out / rundir.METRICS_FILE).exists()
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    assert main([*train_args, "--out", str(out), "--max-steps", "2"]) == 0  # the holder is gone: the lock is free


def _interrupted(out: Path) -> None:
    """What a killed trainer leaves: checkpoints, metrics and data, but no final config.json / weights."""
    (out / rundir.WEIGHTS_FILE).unlink()
    (out / rundir.CONFIG_FILE).unlink()


def test_info_and_generate_use_the_latest_checkpoint_of_an_interrupted_run(tmp_path, train_args, capsys, caplog):
    from tinyinterp.cli import main as cli

    out, _ = _run(tmp_path, train_args, 4)
    _interrupted(out)
    capsys.readouterr()
    assert cli(["info", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "no final weights" in printed and "latest checkpoint step_00000004" in printed
    assert "not a tinyinterp run directory" not in printed
    with caplog.at_level("WARNING"):
        assert cli(["generate", str(out), "Once upon a time", "--max-new-tokens", "5", "--seed", "0"]) == 0
    assert "Once upon a time" in capsys.readouterr().out
    assert "without final weights" in caplog.text and "step_00000004" in caplog.text


def test_bad_checkpoint_advice_points_at_the_previous_checkpoint(tmp_path, train_args, capsys):
    out, common = _run(tmp_path, train_args, 4)
    bad = latest_checkpoint(out)
    weights = bad / rundir.WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0x01
    weights.write_bytes(bytes(data))
    capsys.readouterr()
    assert main([*common, "--max-steps", "6"]) == 2
    line = _one_line_error(capsys)
    assert f"delete {bad}" in line and "step_00000002" in line
    assert "use a checkpoint from checkpoints/" not in line  # that would send the user back to the bad file


def test_a_metrics_log_that_is_a_folder_is_named_not_reported_missing(tmp_path, train_args, capsys):
    from tinyinterp.cli import main as cli

    out, _ = _run(tmp_path, train_args, 2)
    (out / rundir.METRICS_FILE).unlink()
    (out / rundir.METRICS_FILE).mkdir()
    capsys.readouterr()
    assert cli(["info", str(out)]) == 2
    line = _one_line_error(capsys)
    assert str(out / rundir.METRICS_FILE) in line and "not a file" in line
