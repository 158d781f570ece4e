"""Shared fixtures: the shared data folder, tiny models and tiny run directories. No network."""

from __future__ import annotations

import os

import pytest

# Tests never reach the hub; make any accidental hub call fail fast instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny test models run several times faster on one thread than on two contended ones."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def shared_data():
    """The shared data folder (../shared/data or $TINYINTERP_DATA); skips the test where absent."""
    from tinyinterp.data.paths import data_dir

    path = data_dir(required=False)
    if path is None:
        pytest.skip("shared data folder not found (set TINYINTERP_DATA)")
    return path


@pytest.fixture
def tiny_model():
    """A random-init ``test-tiny`` HookedTransformer over a 100-token vocabulary (no tokenizer)."""
    import torch

    from tinyinterp.models.transformer import HookedTransformer
    from tinyinterp.models.zoo import preset_config

    torch.manual_seed(0)
    return HookedTransformer(preset_config("test-tiny", d_vocab=100)).eval()


TINY_TEXTS = [
    "Once upon a time, there was a little girl named Lily. She loved to play outside.",
    "One day, Tom found a big red ball in the park. He was very happy.",
    "Lily and Tom were friends. They liked to share their toys and sing songs.",
]


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """A fresh byte-level BPE of 300 tokens trained on three short stories."""
    from tinyinterp.data.tokenizer import Tokenizer

    return Tokenizer.train_bpe(TINY_TEXTS * 5, vocab_size=300, progress=False)


@pytest.fixture
def tiny_run(tmp_path, tiny_tokenizer):
    """A saved run directory with a random ``test-tiny`` model over ``tiny_tokenizer``."""
    import torch

    from tinyinterp.runs import rundir
    from tinyinterp.models.transformer import HookedTransformer
    from tinyinterp.models.zoo import preset_config

    torch.manual_seed(0)
    model = HookedTransformer(preset_config("test-tiny", d_vocab=tiny_tokenizer.vocab_size), tokenizer=tiny_tokenizer)
    return rundir.save_run(tmp_path / "run", model, tiny_tokenizer)
