"""A saved tiny run with train/val corpora, and a small SAE and transcoder trained on it through the CLI."""

from __future__ import annotations

import pytest
import torch

from tests.support.story_world import make_model, make_stories

SAE_HOOK = "blocks.1.hook_resid_post"
COMMON = ["--tokens", "6144", "--batch-tokens", "512", "--buffer-tokens", "1024", "--checkpoint-every", "4",
          "--no-progress"]


@pytest.fixture(scope="session")
def dict_run(tmp_path_factory):
    from tinyinterp.runs import rundir
    from tinyinterp.data.corpus import tokenize_corpus
    from tinyinterp.data.tokenizer import Tokenizer

    torch.set_num_threads(1)
    tokenizer = Tokenizer.train_bpe(make_stories(200, seed=1), vocab_size=400, progress=False)
    model = make_model(tokenizer, seed=2)
    run = rundir.save_run(tmp_path_factory.mktemp("runs") / "run", model, tokenizer)
    tokenize_corpus(make_stories(120, seed=4), tokenizer, run / "data" / "train", progress=False)
    tokenize_corpus(make_stories(40, seed=5), tokenizer, run / "data" / "val", progress=False)
    return run


@pytest.fixture(scope="session")
def trained_sae(dict_run):
    from tinyinterp.cli import main

    out = dict_run / "analysis" / "dictionaries" / "sae"
    assert main(["sae", "train", str(dict_run), "--hook", SAE_HOOK, "--width", "128", "--k", "8", "--out", str(out),
                 *COMMON]) == 0
    return out


@pytest.fixture(scope="session")
def trained_transcoder(dict_run):
    from tinyinterp.cli import main

    out = dict_run / "analysis" / "dictionaries" / "tc"
    assert main(["sae", "train", str(dict_run), "--transcoder", "0", "--width", "128", "--k", "8", "--out", str(out),
                 *COMMON]) == 0
    return out
