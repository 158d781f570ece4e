"""Real tiny data for the deeper app views: baseline explanations and an emergence analysis of a run.

``add_explanations`` runs the offline baseline explainer (``tinyinterp.explain``) over a run's neurons;
``add_emergence`` trains a fresh copy of the run's model for a few steps, saving log-spaced weight
snapshots into the run (``training.snapshots``), and runs ``analyze_emergence`` over them and the run's
final weights. ``deep_root`` (session scope) is a copy of the app tests' runs root whose ``demo`` has both;
``deep_app`` opens a page over it, like ``make_app``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

SNAPSHOT_STEPS = (1, 2, 4, 8, 16)


def add_explanations(run: Path, neurons: list[tuple[int, int]] | None = None) -> dict:
    from tinyinterp.runs import rundir
    from tinyinterp.data.corpus import TokenizedCorpus
    from tinyinterp.explain import ExplainRunConfig, ExplainRunner, explanations_dir
    from tinyinterp.interp import NeuronIndex

    model = rundir.load_run(run).eval()
    index = NeuronIndex.load(run / rundir.ANALYSIS_DIR / "neurons")
    if index.corpus is None:  # the runs root was copied: its corpus sits beside the run
        index = NeuronIndex(index.path, index.meta, index.tensors, corpus=TokenizedCorpus.open(run.parent / "corpus"),
                            tokenizer=index.tokenizer)
    cfg = ExplainRunConfig(explainer="baseline", neurons=neurons)
    return ExplainRunner(model, index, cfg, explanations_dir(run)).run()


def add_emergence(run: Path, corpus, steps=SNAPSHOT_STEPS, seq_len: int = 32, batch: int = 8):
    """Snapshots of a fresh model trained ``max(steps)`` steps, then the emergence analysis of the run."""
    from tinyinterp.runs import rundir
    from tinyinterp.interp.emergence import EmergenceConfig, analyze_emergence
    from training.snapshots import save_snapshot

    model = rundir.load_run(run)
    torch.manual_seed(0)
    for p in model.parameters():  # a fresh start: the snapshots must show training, not the final weights
        torch.nn.init.normal_(p, std=0.02) if p.dim() > 1 else torch.nn.init.zeros_(p)
    tokens = torch.from_numpy(np.asarray(corpus.tokens, dtype=np.int64))
    rng = np.random.default_rng(0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(1, max(steps) + 1):
        starts = rng.integers(0, len(tokens) - seq_len - 1, size=batch)
        loss = model(torch.stack([tokens[s : s + seq_len] for s in starts]), return_type="loss")
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step in steps:
            save_snapshot(run, step, model)
    model.eval()
    config = EmergenceConfig(max_docs=20, k=8, n_samples=8, seq_len=24)
    return analyze_emergence(run, corpus, config, model=rundir.load_run(run).eval(), progress=False)


@pytest.fixture(scope="session")
def deep_root(runs_root, tmp_path_factory) -> Path:
    """A copy of the runs root whose ``demo`` also has baseline explanations and an emergence analysis."""
    from tinyinterp.data.corpus import TokenizedCorpus

    root = tmp_path_factory.mktemp("deep") / "runs"
    shutil.copytree(runs_root, root, symlinks=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        add_explanations(root / "demo")
        add_emergence(root / "demo", TokenizedCorpus.open(root / "corpus"))
    finally:
        torch.set_num_threads(threads)
    return root


@pytest.fixture
def deep_app(deep_root, monkeypatch):
    """``deep_app(page, **query)``: an AppTest of ``page`` over :func:`deep_root`."""
    from apps.runs_root import RUNS_ENV
    from tests.support.app_pages import open_page

    monkeypatch.setenv(RUNS_ENV, str(deep_root))
    return open_page
