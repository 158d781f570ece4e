"""A device this machine cannot use is one line, from the library and from every CLI that loads a model."""

from __future__ import annotations

import pytest
import torch

import tinyinterp
from tinyinterp.cli import main
from tinyinterp.models.devices import resolve_device
from tinyinterp.errors import TinyinterpError

needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")


@needs_no_cuda
def test_load_on_cuda_without_cuda_is_one_line(tiny_run):
    with pytest.raises(TinyinterpError, match="--device cuda") as exc:
        tinyinterp.load(tiny_run, device="cuda")
    assert "\n" not in str(exc.value)


@needs_no_cuda
def test_analyze_on_cuda_without_cuda_is_one_line(tiny_run, capsys):
    assert main(["analyze", "heads", str(tiny_run), "--device", "cuda", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --device cuda") and len(err.splitlines()) == 1


def test_bad_device_names_and_cpu():
    with pytest.raises(TinyinterpError, match="not a device name"):
        resolve_device("gpu0")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
