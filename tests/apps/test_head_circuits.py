"""The heads page's per-head QK/OV panel: deep links ``?layer=&head=`` (validated), pickers, the library's
numbers (``circuits.head_circuit``) shown as they are, token strings escaped."""

from __future__ import annotations

import html

import pytest

from tests.support.app_pages import page_text


@pytest.fixture(scope="module")
def demo_model(runs_root):
    from tinyinterp.runs import rundir

    return rundir.load_run(runs_root / "demo").eval()


def _metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _circuit_html(at) -> str:
    return "".join(h.proto.body for h in at.get("html") if 'class="circuit"' in h.proto.body)


def test_deep_link_shows_the_head_circuit(make_app, demo_model, runs_root):
    from tinyinterp.interp import HeadResult
    from tinyinterp.interp.circuits import head_circuit

    at = make_app("heads", run="demo", layer=1, head=2)
    expected = head_circuit(demo_model, 1, 2)
    metrics = _metrics(at)
    assert metrics["head"] == "L1H2"
    assert metrics["OV copying score"] == f"{expected.copying_score:.2f}"
    assert metrics["self top-1"] == f"{expected.self_top1:.2f}"
    frame = HeadResult.load(runs_root / "demo" / "analysis" / "heads").to_frame().set_index(["layer", "head"])
    assert metrics["class"] == frame.loc[(1, 2), "head_class"]
    tables = _circuit_html(at)
    for src, dst, value in expected.ov_top[:3] + expected.qk_top[:3]:
        for token in (src, dst):
            assert html.escape(token.replace(" ", "␣"), quote=True) in tables
        assert f"{value:.3f}" in tables
    assert at.query_params["layer"] == "1" and at.query_params["head"] == "2"
    charts = at.get("vega_lite_chart")  # positional QK by distance, the head's pattern, the distance profiles
    assert "positional QK" in charts[0].proto.spec and '"attention"' in charts[1].proto.spec


def test_pickers_change_the_head_and_the_link(make_app, demo_model):
    from tinyinterp.interp.circuits import head_circuit

    at = make_app("heads", run="demo")
    assert _metrics(at)["head"] == "L0H0"
    at.selectbox(key="circuit_layer").select(1).run()
    at.selectbox(key="circuit_head").select(3).run()
    assert _metrics(at)["head"] == "L1H3"
    assert _metrics(at)["OV copying score"] == f"{head_circuit(demo_model, 1, 3).copying_score:.2f}"
    assert at.query_params["layer"] == "1" and at.query_params["head"] == "3"


def test_out_of_range_link_says_so(make_app):
    for query in ({"layer": 7, "head": 0}, {"layer": 0, "head": 99}, {"layer": "x", "head": 1}):
        at = make_app("heads", run="demo", **query)
        assert "head" not in _metrics(at), "an out-of-range link must not silently show another head"
        (message,) = [e.value for e in at.error]
        assert f"layer {query['layer']}, head {query['head']}" in message and "does not have" in message
    at.selectbox(key="circuit_head").select(2).run()  # picking a head clears the message
    assert not at.error and _metrics(at)["head"] == "L0H2"
    assert "Distance profile" in page_text(at)  # the rest of the page is drawn either way
