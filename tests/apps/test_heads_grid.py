"""The heads page's class overview: the winning factor beside the class in the table, a layers x heads grid
coloured by class whose cells open the head, and results analysed before the factors existed."""

from __future__ import annotations

import json

from tests.support.app_pages import open_page

CLASS_COLOURS = {"local": "blue", "semantic": "green", "mixed": "gray"}  # as apps/views/heads.py draws them


def _metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _result(root):
    from tinyinterp.interp import HeadResult

    return HeadResult.load(root / "demo" / "analysis" / "heads")


def test_factor_sits_beside_the_class(make_app, runs_root):
    at = make_app("heads", run="demo")
    table = at.dataframe[0].value
    columns = list(table.columns)
    assert columns.index("factor") == columns.index("head_class") + 1
    frame = _result(runs_root).to_frame().set_index(["layer", "head"])
    for row in table.itertuples():
        assert row.factor == frame.loc[(row.layer, row.head), "factor"] != ""


def test_grid_cells_show_the_class_and_open_the_head(make_app, runs_root):
    result = _result(runs_root)
    factor = result.factor()
    at = make_app("heads", run="demo")
    L, H = result.head_class.shape
    cells = {b.key: b for b in at.button if b.key and b.key.startswith("head_cell_")}
    assert len(cells) == L * H
    for layer in range(L):
        for head in range(H):
            cell, cls = cells[f"head_cell_{layer}_{head}"], str(result.head_class[layer, head])
            assert cell.label == f":{CLASS_COLOURS[cls]}[**{cls[0].upper()}**]"
            assert f"L{layer}H{head}: {cls} · {factor[layer, head]}" in cell.help
    assert _metrics(at)["head"] == "L0H0"
    at.button(key=f"head_cell_{L - 1}_{H - 1}").click().run()
    metrics = _metrics(at)
    assert metrics["head"] == f"L{L - 1}H{H - 1}" and metrics["class"] == result.head_class[L - 1, H - 1]
    assert metrics["factor"] == factor[L - 1, H - 1]
    assert at.query_params["layer"] == str(L - 1) and at.query_params["head"] == str(H - 1)
    at.button(key="head_cell_0_1").click().run()
    assert _metrics(at)["head"] == "L0H1" and at.selectbox(key="circuit_head").value == 1


def test_heads_analysed_before_the_factors_still_show(broken):
    """An old heads.json (no factor, no factor shares, no sufficiency threshold) draws table, grid and panel."""
    path = broken / "demo" / "analysis" / "heads" / "heads.json"
    old = json.loads(path.read_text())
    del old["head_factor"]
    old["metrics"] = {m: v for m, v in old["metrics"].items()
                      if m in ("structure", "distance_explained", "content_explained", "joint_explained", "margin")
                      or not m.endswith(("_explained", "_margin"))}
    old["thresholds"].pop("sufficiency")
    path.write_text(json.dumps(old))
    at = open_page("heads", run="demo")
    assert not at.error
    table = at.dataframe[0].value
    assert (table.factor == "").all() and table.semantic_explained.isna().all()
    assert len([b for b in at.button if b.key and b.key.startswith("head_cell_")]) == len(table)
    assert _metrics(at)["factor"] == "—"
    at.button(key="head_cell_1_2").click().run()
    assert _metrics(at)["head"] == "L1H2"
