"""Atomic checkpoints: an interrupted write never produces a folder latest_checkpoint() would pick."""

from __future__ import annotations

import shutil

import pytest
import torch

from tinyinterp.models.transformer import HookedTransformer
from tinyinterp.models.zoo import preset_config
from tinyinterp.runs.checkpoints import latest_checkpoint, list_checkpoints
from training import checkpoint as ckpt


@pytest.fixture
def model_and_opt():
    torch.manual_seed(0)
    model = HookedTransformer(preset_config("test-tiny", d_vocab=40))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randint(0, 40, (2, 8)), return_type="loss").backward()
    opt.step()
    return model, opt


def _save(run, step, model, opt):
    return ckpt.save_checkpoint(run, step, model, opt, {"tokens": step}, {"model": model.cfg.to_dict()})


def test_interrupted_write_is_never_picked(tmp_path, model_and_opt, monkeypatch):
    model, opt = model_and_opt
    good = _save(tmp_path, 1, model, opt)
    assert latest_checkpoint(tmp_path) == good

    def crash(*args, **kwargs):  # dies after the weights are on disk, while writing the optimizer state
        raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(ckpt.torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        _save(tmp_path, 2, model, opt)
    monkeypatch.undo()
    assert latest_checkpoint(tmp_path) == good
    assert not (tmp_path / "checkpoints" / "step_00000002").exists()

    # kill -9 just before the rename: a complete temp folder is left behind and still ignored.
    leftover = tmp_path / "checkpoints" / ".tmp-step_00000003-4242"
    shutil.copytree(good, leftover)
    # a step folder without state.json (e.g. copied by hand, half done) is ignored too
    half = tmp_path / "checkpoints" / "step_00000004"
    shutil.copytree(good, half)
    (half / ckpt.STATE_FILE).unlink()
    assert latest_checkpoint(tmp_path) == good
    ckpt.remove_stale_temp_dirs(tmp_path)
    assert not leftover.exists() and good.exists()


def test_roundtrip_restores_weights_optimizer_and_rng(tmp_path, model_and_opt):
    model, opt = model_and_opt
    torch.manual_seed(123)
    path = _save(tmp_path, 7, model, opt)
    expected_draw = torch.rand(3)
    fresh = HookedTransformer(preset_config("test-tiny", d_vocab=40))
    loaded = ckpt.load_checkpoint(path, fresh)
    assert loaded.state["step"] == 7 and loaded.state["tokens"] == 7
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=1e-3)
    fresh_opt.load_state_dict(loaded.optimizer_state)
    for p, q in zip(model.parameters(), fresh.parameters()):
        assert torch.equal(opt.state[p]["exp_avg"], fresh_opt.state[q]["exp_avg"])
    ckpt.set_rng_state(loaded.rng)
    assert torch.equal(torch.rand(3), expected_draw)


def test_prune_keeps_newest_and_resave_replaces(tmp_path, model_and_opt):
    model, opt = model_and_opt
    for step in (1, 2, 3, 4):
        _save(tmp_path, step, model, opt)
    ckpt.prune_checkpoints(tmp_path, keep_last=2)
    assert [c.step for c in list_checkpoints(tmp_path)] == [3, 4]
    _save(tmp_path, 4, model, opt)  # same step again (a resumed run that ends where it started)
    assert [c.step for c in list_checkpoints(tmp_path)] == [3, 4]
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".tmp")]
