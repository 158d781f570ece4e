"""One line, not a traceback: disk full while checkpointing, a malicious optimizer.pt, an unusable --device."""

from __future__ import annotations

import errno
import os

import pytest
import torch

from tinyinterp.runs import rundir
from tinyinterp.models.devices import resolve_device
from tinyinterp.errors import TinyinterpError
from tinyinterp.runs.checkpoints import latest_checkpoint
from tinyinterp.io.jsonl import read_jsonl
from training import checkpoint as ckpt
from training.train import main


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in "\n".join(err), err
    return errors[0]


def test_disk_full_while_checkpointing_is_one_line_and_keeps_the_previous_checkpoint(tmp_path, train_args, capsys,
                                                                                        monkeypatch):
    out = tmp_path / "run"
    common = [*train_args, "--out", str(out), "--max-steps", "8", "--ckpt-every", "4", "--eval-every", "4", "--log-every", "1"]
    real_save, calls = torch.save, []

    def disk_fills_up(obj, f, *args, **kwargs):  # the 2nd checkpoint's optimizer state hits a full disk halfway
        calls.append(1)
        if len(calls) == 2:
            f.write(b"\0" * 100)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(ckpt.torch, "save", disk_fills_up)
    assert main(common) == 2
    line = _one_line_error(capsys)
    assert "No space left on device" in line and "step 8" in line and "step_00000004" in line
    monkeypatch.undo()
    assert [p.name for p in (out / rundir.CHECKPOINTS_DIR).iterdir()] == ["step_00000004"]  # no half-written folder
    model = rundir.load_run(latest_checkpoint(out))  # the previous checkpoint is intact
    assert model.cfg.preset == "test-tiny"
    assert main(common) == 0  # once there is space again, the rerun resumes from step 4
    assert [r["step"] for r in read_jsonl(out / rundir.METRICS_FILE)] == list(range(1, 9))


class _RunsCode:
    """Unpickling this calls os.mkdir(marker): proof that a loader executed code from the file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_malicious_optimizer_state_is_refused_without_running_it(tmp_path, train_args, capsys):
    out, marker = tmp_path / "run", tmp_path / "code-ran"
    common = [*train_args, "--out", str(out), "--ckpt-every", "2", "--eval-every", "2"]
    assert main([*common, "--max-steps", "2"]) == 0
    capsys.readouterr()
    optimizer_file = latest_checkpoint(out) / ckpt.OPTIMIZER_FILE
    torch.save({"state": {0: _RunsCode(str(marker))}, "param_groups": []}, optimizer_file)

    assert main([*common, "--max-steps", "4"]) == 2
    line = _one_line_error(capsys)
    assert str(optimizer_file) in line and "refused" in line
    assert "weights_only" not in line  # torch's advice (weights_only=False) would run the file's code
    assert not marker.exists()


def test_cuda_device_without_cuda_is_one_line(tmp_path, train_args, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # what a CPU-only torch reports
    assert main([*train_args, "--out", str(tmp_path / "run"), "--max-steps", "2", "--device", "cuda"]) == 2
    line = _one_line_error(capsys)
    assert "--device cuda" in line and "--device cpu" in line
    for bad in ("cuda:0", "gpu", "mps:7"):
        with pytest.raises(TinyinterpError, match="--device"):
            resolve_device(bad)
    assert resolve_device("cpu") == torch.device("cpu")
