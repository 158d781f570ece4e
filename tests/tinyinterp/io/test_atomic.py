"""Atomic writes leave the permissions an ordinary write would: 0666 & ~umask for a new file, the old mode when replacing."""

from __future__ import annotations

import os
import stat

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyinterp.io import atomic
from tinyinterp.runs import rundir


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@settings(max_examples=30, deadline=None)
@given(umask=st.integers(0, 0o777))
def test_new_files_respect_the_umask(tmp_path_factory, umask):
    folder = tmp_path_factory.mktemp("umask")
    old = os.umask(umask)
    try:
        atomic.atomic_write_text(folder / "a.txt", "x")
        rundir.atomic_save_tensors(folder / "w.safetensors", {"w": torch.zeros(2)})
        with open(folder / "plain.txt", "w") as f:  # what an ordinary write gives
            f.write("x")
    finally:
        os.umask(old)
    assert _mode(folder / "a.txt") == _mode(folder / "w.safetensors") == _mode(folder / "plain.txt") == 0o666 & ~umask


def test_replacing_a_file_keeps_its_mode(tmp_path):
    target = tmp_path / "config.json"
    atomic.atomic_write_json(target, {"v": 1})
    os.chmod(target, 0o640)
    atomic.atomic_write_json(target, {"v": 2})
    assert _mode(target) == 0o640
    assert target.read_text().strip().endswith("}")


def test_umask_is_read_without_being_changed():
    old = os.umask(0o027)
    try:
        assert atomic.current_umask() == 0o027
        assert atomic.current_umask() == 0o027
    finally:
        os.umask(old)
