"""Training: a killed run resumes from its last checkpoint; the saved dictionary is the folded final state."""

from __future__ import annotations

import json

import pytest
import torch

from tests.support.planted_features import PlantedSource
from tinyinterp.dictionaries import DictionaryConfig, TrainConfig, load_dictionary
from tinyinterp.dictionaries.training import CHECKPOINT_DIR, TRAIN_LOG, DictionaryTrainer

HOOK = "blocks.0.hook_resid_post"


class Killed(Exception):
    pass


class DiesAfter(PlantedSource):
    """Raises after ``die_after`` batches — what a kill between checkpoints leaves behind."""

    def __init__(self, *args, die_after: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.die_after = die_after

    def batches(self, batch_tokens):
        for i, batch in enumerate(super().batches(batch_tokens)):
            if i == self.die_after:
                raise Killed
            yield batch


def _cfg():
    return DictionaryConfig("sae", HOOK, HOOK, 16, 16, 32, 4)


def _train():
    return TrainConfig(tokens=256 * 30, batch_tokens=256, buffer_tokens=256, checkpoint_every=5, lr=1e-3)


def test_a_killed_training_resumes_from_its_last_checkpoint(tmp_path):
    with pytest.raises(Killed):
        DictionaryTrainer(_cfg(), _train(), tmp_path, DiesAfter(16, 16, 24, 3, seed=0, die_after=13)).run(progress=False)
    state = json.loads((tmp_path / CHECKPOINT_DIR / "state.json").read_text())
    assert state["step"] == 10  # the last checkpoint before the kill
    assert not (tmp_path / "cfg.json").exists()  # no final dictionary from a killed run
    resumed = DictionaryTrainer(_cfg(), _train(), tmp_path, PlantedSource(16, 16, 24, 3, seed=1))
    coder = resumed.run(progress=False)
    assert resumed.step == 30 and resumed.tokens == 256 * 30
    steps = [json.loads(line)["step"] for line in (tmp_path / TRAIN_LOG).read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 30
    saved = load_dictionary(tmp_path)
    for name, t in coder.tensors().items():
        assert torch.equal(t, saved.tensors()[name])
    assert saved.cfg.input_scale == resumed.scales[0]


def test_a_checkpoint_of_another_dictionary_is_refused(tmp_path):
    from tinyinterp.dictionaries import DictionaryError

    DictionaryTrainer(_cfg(), _train(), tmp_path, PlantedSource(16, 16, 24, 3, seed=0)).run(progress=False)
    other = DictionaryConfig("sae", HOOK, HOOK, 16, 16, 64, 4)
    with pytest.raises(DictionaryError, match="another dictionary"):
        DictionaryTrainer(other, _train(), tmp_path, PlantedSource(16, 16, 24, 3, seed=0)).run(progress=False)
