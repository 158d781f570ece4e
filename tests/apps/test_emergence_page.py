"""The Emergence page over a real emergence analysis (snapshots at steps 1-16 plus the final weights of
``demo``): curves, the step slider, a neuron and a head stepped through training, and broken files."""

from __future__ import annotations

import html
import shutil
from collections import Counter

import pytest

from tests.support.app_pages import page_text
from tests.support.app_depth import SNAPSHOT_STEPS, deep_app, deep_root  # noqa: F401  (fixtures)


@pytest.fixture(scope="module")
def result(deep_root):  # noqa: F811
    from tinyinterp.interp.emergence import EmergenceResult

    return EmergenceResult.load(deep_root / "demo" / "analysis" / "emergence")


@pytest.fixture(scope="module")
def tokenizer(deep_root):  # noqa: F811
    from tinyinterp.data.tokenizer import Tokenizer

    return Tokenizer.load(deep_root / "demo")


def _track_html(at) -> str:
    (body,) = [h.proto.body for h in at.get("html") if 'class="neuron-track"' in h.proto.body]
    return body


def _rows(body: str) -> list[str]:
    return body.split("<tr")[2:]  # after the header row


def test_curves_and_summary(deep_app, result):  # noqa: F811
    at = deep_app("emergence", run="demo")
    frame = result.to_frame()
    steps = frame.step.tolist()
    assert steps == [*SNAPSHOT_STEPS, 120]
    assert f"{len(frame)} saved states from step 1 to 120 ({int(frame.tokens.max()):,} tokens)" in page_text(at)
    specs = [c.proto.spec for c in at.get("vega_lite_chart")]
    for title in ("role share and mean type purity", "Head classes (count)", "Attention on the fixed prompts", "Loss"):
        assert any(title in s for s in specs), title
    assert at.select_slider(key="emergence_step").value == 120


def test_step_a_neuron_through_training(deep_app, result, tokenizer):  # noqa: F811
    at = deep_app("emergence", run="demo")
    at.selectbox(key="em_neuron_layer").select(1).run()
    at.number_input(key="em_neuron").set_value(7).run()
    at.select_slider(key="emergence_step").set_value(4).run()
    track = result.neuron_track(1, 7)
    rows = _rows(_track_html(at))
    assert len(rows) == len(track)
    for row, expected in zip(rows, track.itertuples()):
        assert f"<td>{expected.step}</td>" in row and f"<td>{expected.max_activation:.3f}</td>" in row
        token, count = Counter(t for t in expected.top_tokens if t >= 0).most_common(1)[0]
        shown = html.escape(tokenizer.token_str(token).replace(" ", "␣"), quote=True)
        assert f"{shown}</span>×{count}" in row
        assert ("background:#fff4cc" in row) == (expected.step == 4)  # the slider's step is marked
    assert track.max_activation.nunique() > 1  # the states really differ


def test_step_a_head_through_training(deep_app, result):  # noqa: F811
    at = deep_app("emergence", run="demo")
    at.selectbox(key="em_head_layer").select(1).run()
    at.selectbox(key="em_head").select(2).run()
    track = result.head_track(1, 2)
    for step in (1, 16):
        at.select_slider(key="emergence_step").set_value(step).run()
        metrics = {m.label: m.value for m in at.metric}
        assert metrics[f"class at step {step}"] == track[track.step == step].iloc[0].head_class
        assert f"L1H2 at step {step} on:" in page_text(at)
    shown = at.dataframe[-1].value
    assert shown.step.tolist() == track.step.tolist() and shown.head_class.tolist() == track.head_class.tolist()
    pattern = result.patterns(16)["prompt_0"][1, 2]
    spec = at.get("vega_lite_chart")[-1].proto.spec
    assert '"attention"' in spec and pattern.shape[0] > 1


def test_run_without_emergence_says_how_to_make_one(make_app):
    at = make_app("emergence", run="baseline")
    assert any("tinyinterp analyze emergence" in i.value for i in at.info)


def test_broken_step_file_is_one_line(deep_root, tmp_path, monkeypatch):  # noqa: F811
    from apps.runs_root import RUNS_ENV
    from tests.support.app_pages import open_page

    root = tmp_path / "runs"
    shutil.copytree(deep_root, root, symlinks=True)
    monkeypatch.setenv(RUNS_ENV, str(root))
    step_dir = root / "demo" / "analysis" / "emergence" / "step_00000004"
    (step_dir / "patterns.safetensors").write_bytes(b"\x00" * 10)  # a torn patterns file: its panel only
    at = open_page("emergence", run="demo")
    at.select_slider(key="emergence_step").set_value(4).run()
    assert not at.exception
    (error,) = [e.value for e in at.error]
    assert error.startswith("patterns at step 4")
    assert _rows(_track_html(at))  # the neuron panel still works
    (step_dir / "summary.json").write_text("{not json")  # the analysis itself unreadable: one line, page stops
    at = open_page("emergence", run="demo")
    (error,) = [e.value for e in at.error]
    assert error.startswith("emergence analysis") and "summary.json" in error
