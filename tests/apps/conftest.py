"""A small but real runs root for the app tests, built once per session.

``runs_root/demo`` is a ``test-tiny`` model trained by the real trainer (``training.train``) for 120 steps
on little stories (so its neurons and heads are not pure noise), with the ``metrics.jsonl`` and final
weights that training wrote, its neuron index + purity, head classes, a saved comparison against ``runs_root/baseline`` (the same shape at
random init, analysed too) and grade files in the evaluation format. One story of the corpus contains
``<script>alert(1)</script>`` so the escaping tests can look for it. ``demo`` also has two sparse dictionaries
trained and evaluated by the real dictionary code (:mod:`tests.support.app_dictionaries`).
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest
import streamlit  # noqa: F401  (imported at collection: its log handler must not bind to a test's capsys stream)
import torch

from tests.support.app_pages import APP_FILE, SCRIPT_STORY, app_stories

def _train_with_the_trainer(run: Path, stories: list[str], tokenizer, steps: int) -> None:
    """``tinyinterp train`` itself (test-tiny, ``steps`` AdamW steps on one thread): a real ``metrics.jsonl``
    with validation losses every 30 steps and the final weights, as a user's finished run has them."""
    from tinyinterp.runs.layout import CHECKPOINTS_DIR, DATA_DIR, LOCK_FILE
    from training.train import main as train_main

    texts = run.parent / f"{run.name}-texts"
    texts.mkdir()
    (texts / "train.txt").write_text("".join(f"{s}\n<|endoftext|>\n" for s in stories), encoding="utf-8")
    (texts / "val.txt").write_text("".join(f"{s}\n<|endoftext|>\n" for s in stories[:8]), encoding="utf-8")
    tokenizer.save(texts / "tokenizer.json")
    assert train_main([
        "--out", str(run), "--data", str(texts / "train.txt"), "--val-data", str(texts / "val.txt"),
        "--tokenizer", str(texts / "tokenizer.json"), "--preset", "test-tiny", "--max-steps", str(steps),
        "--batch-size", "8", "--seq-len", "48", "--lr", "3e-3", "--warmup-steps", "0", "--log-every", "10",
        "--eval-every", "30", "--eval-batches", "2", "--ckpt-every", str(steps), "--threads", "1", "--no-progress",
    ]) == 0
    shutil.rmtree(texts)
    # The pages were written against a finished run of config, tokenizer, weights and metrics: the trainer's
    # resume state (checkpoints/, the tokenized data/, the lock file) is not part of what they show.
    for leftover in (CHECKPOINTS_DIR, DATA_DIR):
        shutil.rmtree(run / leftover)
    (run / LOCK_FILE).unlink(missing_ok=True)


def _write_grades(eval_dir: Path) -> None:
    """grades.jsonl + grades_summary.json in the evaluation module's format (its own summarize)."""
    from tinyinterp.io.atomic import atomic_write_json
    from tinyinterp.io.jsonl import append_jsonl

    rng = random.Random(0)
    records = []
    for ckpt, step in (("step_00000100", 100), ("final", 300)):
        for p in range(4):
            grades = {s: rng.randint(2, 8) for s in ("grammar", "creativity", "consistency", "plot")}
            records.append({"model_hash": "abc", "checkpoint": ckpt, "step": step, "tokens_seen": step * 768,
                            "prompt_id": f"p{p}", "sample": 0, "status": "ok", "grader_model": "fake-grader",
                            "grades": {**grades, "age_group": "B"}, "cost_usd": 0.001})
    eval_dir.mkdir(parents=True, exist_ok=True)
    for r in records:
        append_jsonl(eval_dir / "grades.jsonl", r)
    try:
        from tinyinterp.evaluation.grading import summarize
    except ImportError:  # the evaluation package is optional for these tests
        return
    atomic_write_json(eval_dir / "grades_summary.json", summarize(records))


@pytest.fixture(scope="session")
def runs_root(tmp_path_factory) -> Path:
    """``runs/{demo,baseline}`` with analyses, plus the corpus they were analysed on."""
    root = tmp_path_factory.mktemp("runs")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is faster, and CI's 2 cores are shared
    try:
        _build(root)
    finally:
        torch.set_num_threads(threads)
    return root


def _build(root: Path) -> None:
    from tinyinterp.runs import rundir
    from tinyinterp.data.corpus import tokenize_corpus
    from tinyinterp.interp import HeadConfig, NeuronIndexConfig, analyze_heads, build_neuron_index, compare, neuron_purity
    from tinyinterp.models.transformer import HookedTransformer
    from tinyinterp.data.tokenizer import Tokenizer
    from tinyinterp.models.zoo import preset_config

    stories = app_stories(80) + [SCRIPT_STORY]
    tokenizer = Tokenizer.train_bpe(stories * 3, vocab_size=300, progress=False)
    corpus = tokenize_corpus(stories, tokenizer, root / "corpus", progress=False)
    models = {}
    for name, seed, steps in (("demo", 0, 120), ("baseline", 1, 0)):
        if steps:
            _train_with_the_trainer(root / name, stories, tokenizer, steps)
            model = rundir.load_run(root / name)
        else:  # the same shape at random init, saved without training
            torch.manual_seed(seed)
            model = HookedTransformer(preset_config("test-tiny", d_vocab=tokenizer.vocab_size), tokenizer=tokenizer)
            rundir.save_run(root / name, model, tokenizer, {"train": None})
        run = root / name
        analysis = run / rundir.ANALYSIS_DIR
        index = build_neuron_index(model, corpus, analysis / "neurons", NeuronIndexConfig(k=12, seq_len=64), progress=False)
        neuron_purity(index, tokenizer, corpus).save(analysis / "neurons")
        analyze_heads(model, corpus, HeadConfig(n_samples=24, seq_len=32), progress=False).save(analysis / "heads")
        models[name] = model.eval()
    result = compare(models["demo"], models["baseline"], corpus, work_dir=root / "demo" / "analysis" / "compare" / "work",
                     index_config=NeuronIndexConfig(k=12, seq_len=64), head_config=HeadConfig(n_samples=24, seq_len=32),
                     progress=False)
    result.save(root / "demo" / "analysis" / "compare" / "demo__vs__baseline")
    _write_grades(root / "demo" / "analysis" / "eval")
    from tests.support.app_dictionaries import add_dictionaries

    add_dictionaries(root / "demo", corpus)
    (root / "notes").mkdir()  # a folder that is not a run: must not be listed
    (root / "notes" / "readme.txt").write_text("not a run")


@pytest.fixture
def app_env(runs_root, monkeypatch):
    """Point the app at the test runs root (the app reads it from the environment)."""
    from apps.runs_root import RUNS_ENV

    monkeypatch.setenv(RUNS_ENV, str(runs_root))
    return runs_root


@pytest.fixture
def make_app(app_env):
    """``make_app(page, **query)`` -> an AppTest of ``apps/app.py`` switched to ``page`` and run."""
    from streamlit.testing.v1 import AppTest

    def make(page: str | None = None, **query) -> AppTest:
        at = AppTest.from_file(str(APP_FILE), default_timeout=60)
        for key, value in query.items():
            at.query_params[key] = str(value)
        at.run()  # AppTest can only switch to an st.navigation page after a first run
        if page is not None:
            at.switch_page(f"views/{page}.py").run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    return make


@pytest.fixture
def broken(runs_root, tmp_path, monkeypatch):
    """A private copy of the runs root (runs + corpus) that a test may damage; the app points at it."""
    import shutil

    from apps.runs_root import RUNS_ENV

    root = tmp_path / "runs"
    shutil.copytree(runs_root, root, symlinks=True)
    monkeypatch.setenv(RUNS_ENV, str(root))
    return root
