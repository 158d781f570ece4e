"""Fixtures for evaluation tests: a tiny run directory (tokenizer, random test-tiny model, two checkpoints)."""

from __future__ import annotations

import shutil

import pytest

STORIES = [
    "Once upon a time, there was a little cat named Tom. Tom liked to play with his red ball in the park.",
    "Lily was tired, so she went to bed. Her mom said good night and turned off the light.",
    "Ben had a big dog. The dog ran to the tree and barked. Ben laughed and said, \"Good dog!\"",
    "One day, Mia found a shiny box. She opened it and saw a toy car inside. She was very happy.",
] * 10


@pytest.fixture(scope="session")
def eval_run(tmp_path_factory):
    """A complete run dir with final weights and checkpoints step_00000001/2 (tokens 1000/2000)."""
    import torch

    from tinyinterp.io.atomic import atomic_write_json
    from tinyinterp.models.transformer import HookedTransformer
    from tinyinterp.runs.rundir import CHECKPOINTS_DIR, WEIGHTS_FILE, save_run, save_weights
    from tinyinterp.data.tokenizer import Tokenizer
    from tinyinterp.models.zoo import preset_config

    tokenizer = Tokenizer.train_bpe(STORIES, vocab_size=300, progress=False)
    run = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    model = HookedTransformer(preset_config("test-tiny", d_vocab=tokenizer.vocab_size), tokenizer=tokenizer).eval()
    save_run(run, model, tokenizer)
    for step in (1, 2):
        ck = run / CHECKPOINTS_DIR / f"step_{step:08d}"
        ck.mkdir(parents=True)
        torch.manual_seed(step)
        other = HookedTransformer(model.cfg, tokenizer=tokenizer)
        save_weights(ck / WEIGHTS_FILE, other)
        atomic_write_json(ck / "state.json", {"step": step, "tokens": 1000 * step})
    return run


@pytest.fixture
def fresh_run(eval_run, tmp_path):
    """A private copy of the run dir (tests write analysis/ into it)."""
    dst = tmp_path / "run"
    shutil.copytree(eval_run, dst)
    return dst
