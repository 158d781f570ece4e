"""A small but real runs root for the app tests, built once per session.

``runs_root/demo`` is a ``test-tiny`` model trained for a few hundred steps on little stories (so its
neurons and heads are not pure noise), with a real ``metrics.jsonl`` from that training, its neuron
index + purity, head classes, a saved comparison against ``runs_root/baseline`` (the same shape at
random init, analysed too) and grade files in the evaluation format. One story of the corpus contains
``<script>alert(1)</script>`` so the escaping tests can look for it.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import streamlit  # noqa: F401  (imported at collection: its log handler must not bind to a test's capsys stream)
import torch

NAMES = ["Lily", "Tom", "Lucy", "Ben", "Mia", "Sam"]
NOUNS = ["ball", "dog", "tree", "cake", "box", "cat", "park", "toy"]
VERBS = ["jumped", "ran", "played", "looked", "found", "saw"]
ADJS = ["big", "red", "happy", "little", "shiny", "soft"]
SCRIPT_STORY = 'Lily saw a box. It said <script>alert(1)</script> on it. "What is this?" Lily asked Tom.'
APP_FILE = Path(__file__).resolve().parents[2] / "apps" / "app.py"


def make_stories(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    stories = []
    for _ in range(n):
        a, b = rng.sample(NAMES, 2)
        sents = [f"One day, {a} saw a {rng.choice(ADJS)} {rng.choice(NOUNS)}."]
        for _ in range(rng.randint(3, 6)):
            sents.append(f"{rng.choice([a, b])} {rng.choice(VERBS)} to the {rng.choice(ADJS)} {rng.choice(NOUNS)}.")
        sents.append(f'{b} said: "I am {rng.choice(ADJS)}!"')
        stories.append(" ".join(sents))
    return stories


def _train(model, corpus, steps: int, seq_len: int = 48, batch: int = 8, lr: float = 3e-3):
    """A few hundred AdamW steps on random windows; returns metrics.jsonl records of the run."""
    import numpy as np

    rng = np.random.default_rng(0)
    tokens = torch.from_numpy(np.asarray(corpus.tokens, dtype=np.int64))
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    records = []
    model.train()
    for step in range(1, steps + 1):
        starts = rng.integers(0, len(tokens) - seq_len - 1, size=batch)
        x = torch.stack([tokens[s : s + seq_len] for s in starts])
        loss = model(x, return_type="loss")
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 10 == 0:
            rec = {"step": step, "tokens": step * batch * seq_len, "train_loss": float(loss.detach()), "lr": lr, "tokens_per_s": 1e5}
            if step % 30 == 0:
                with torch.no_grad():
                    rec["val_loss"] = float(model(tokens[: seq_len * 4].view(4, seq_len), return_type="loss"))
            records.append(rec)
    model.eval()
    return records


def _write_grades(eval_dir: Path) -> None:
    """grades.jsonl + grades_summary.json in the evaluation module's format (its own summarize)."""
    from tinyinterp.rundir import append_jsonl, atomic_write_json

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
    from tinyinterp import rundir
    from tinyinterp.corpus import tokenize_corpus
    from tinyinterp.interp import HeadConfig, NeuronIndexConfig, analyze_heads, build_neuron_index, compare, neuron_purity
    from tinyinterp.model import HookedTransformer
    from tinyinterp.tokenizer import Tokenizer
    from tinyinterp.zoo import preset_config

    stories = make_stories(80) + [SCRIPT_STORY]
    tokenizer = Tokenizer.train_bpe(stories * 3, vocab_size=300, progress=False)
    corpus = tokenize_corpus(stories, tokenizer, root / "corpus", progress=False)
    models = {}
    for name, seed, steps in (("demo", 0, 120), ("baseline", 1, 0)):
        torch.manual_seed(seed)
        model = HookedTransformer(preset_config("test-tiny", d_vocab=tokenizer.vocab_size), tokenizer=tokenizer)
        records = _train(model, corpus, steps) if steps else []
        run = rundir.save_run(root / name, model, tokenizer, {"train": {"max_steps": steps, "lr": 3e-3} if steps else None})
        for r in records:
            rundir.append_jsonl(run / rundir.METRICS_FILE, r)
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


def open_page(page: str, **query):
    """An AppTest of ``page`` over the runs root in the environment (``make_app`` without its fixture)."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP_FILE), default_timeout=60)
    for key, value in query.items():
        at.query_params[key] = str(value)
    at.run()
    if page != "runs":
        at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def iframe_sources(at) -> list[str]:
    """The circuitsvis document of every ``st.iframe`` on the current page (each one must be wrapped in
    an inner ``sandbox="allow-scripts"`` frame, see :func:`apps.render.sandboxed`)."""
    from apps.render import inner_document

    return [inner_document(e.proto.srcdoc) for e in at.get("iframe")]


def page_text(at) -> str:
    """Everything textual on the page (markdown, html, captions, titles, metrics, code), for assertions."""
    parts = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "code", "text", "info", "warning", "error", "success"):
        parts += [str(e.value) for e in at.get(kind)]
    parts += [e.proto.body for e in at.get("html")]
    parts += [f"{m.label} {m.value}" for m in at.metric]
    return "\n".join(parts)
