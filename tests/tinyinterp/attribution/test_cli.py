"""``tinyinterp attribute``: a graph file in circuit-tracer's schema under the run, printed paths, one-line errors."""

from __future__ import annotations

import json

import pytest
import torch

from tests.support import circuit_tracer_schema as schema
from tests.support.attribution_models import build_model, random_transcoders, save_transcoder_set
from tinyinterp.runs import rundir, layout as runlayout
from tinyinterp.attribution import attribute
from tinyinterp.attribution.graph_json import graph_slug, load_graph_json
from tinyinterp.attribution.interventions import FeatureIntervention, intervene
from tinyinterp.cli import main

PROMPT = "Lily and Tom went to the park. Lily gave the ball to"


@pytest.fixture
def run(tmp_path, tiny_tokenizer):
    model = build_model("gpt-neo", seed=0, tokenizer=tiny_tokenizer)
    path = rundir.save_run(tmp_path / "run", model, tiny_tokenizer)
    save_transcoder_set(random_transcoders(model, seed=1),
                        runlayout.dictionaries_dir(path) / runlayout.TRANSCODERS_SET)
    return path


def _fails(argv, capsys, *needles):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err


def test_attribute_writes_a_valid_graph_and_prints_paths(run, capsys):
    assert main(["attribute", str(run), PROMPT, "--no-progress", "--top-paths", "2"]) == 0
    printed = capsys.readouterr().out
    path = runlayout.graph_path(run, graph_slug(PROMPT))
    raw = json.loads(path.read_text())
    assert schema.validate(raw, rundir.load_run(run).cfg.n_layers) == []
    assert raw["metadata"]["prompt"] == PROMPT and raw["metadata"]["scan"]
    graph_line = next(line for line in printed.splitlines() if line.startswith("graph: "))
    n_before = int(graph_line.split()[1])
    assert n_before == raw["metadata"]["tinyinterp"]["n_nodes_before"] > len(raw["nodes"])
    paths = [line for line in printed.splitlines() if line.startswith("  ") and "emb " in line]
    assert len(paths) == 2 and all("logit" in line for line in paths)
    assert load_graph_json(path).slug == graph_slug(PROMPT)


def test_explained_features_carry_their_explanation(run, capsys):
    from tinyinterp.io.jsonl import append_jsonl

    model = rundir.load_run(run).eval()
    graph = attribute(model, random_transcoders(model, seed=1), PROMPT)
    explained = {}
    for layer in range(model.cfg.n_layers):
        folder = runlayout.dictionaries_dir(run) / runlayout.TRANSCODERS_SET / runlayout.transcoder_layer_name(layer)
        (folder / runlayout.EXPLANATIONS_SUBDIR).mkdir()
        for feature in range(64):
            text = f"feature {feature} of layer {layer}"
            append_jsonl(folder / runlayout.EXPLANATIONS_SUBDIR / "baseline.jsonl",
                         {"id": f"L0N{feature}", "layer": 0, "neuron": feature, "explanation": text, "status": "ok"})
            explained[(layer, feature)] = text
    assert main(["attribute", str(run), PROMPT, "--no-progress", "--top-paths", "20"]) == 0
    printed = capsys.readouterr().out
    raw = json.loads(runlayout.graph_path(run, graph_slug(PROMPT)).read_text())
    features = [n for n in raw["nodes"] if n["feature_type"] == "cross layer transcoder"]
    assert features
    for node in features:
        layer, feature, _ = (int(x) for x in node["node_id"].split("_"))
        assert node["clerp"] == explained[(layer, feature)]
    import re

    shown = re.findall(r'L(\d+) #(\d+) @\d+ "([^"]*)"', printed)
    bare = re.findall(r'L\d+ #\d+ @\d+\b(?! ")', printed)
    assert not bare and all(text == explained[(int(l), int(f))] for l, f, text in shown)
    assert graph.n_nodes == raw["metadata"]["tinyinterp"]["n_nodes_before"]


def test_target_and_out(run, tmp_path, tiny_tokenizer, capsys):
    target = next(t for t in (" Tom", " the", " a") if len(tiny_tokenizer.encode(t)) == 1)
    out = tmp_path / "g.json"
    assert main(["attribute", str(run), PROMPT, "--target", target, "--out", str(out), "--no-progress",
                 "--node-threshold", "0.5", "--edge-threshold", "0.9"]) == 0
    raw = json.loads(out.read_text())
    logits = [n for n in raw["nodes"] if n["feature_type"] == "logit"]
    assert [n["feature"] for n in logits] == tiny_tokenizer.encode(target) and logits[0]["is_target_logit"]
    assert raw["metadata"]["node_threshold"] == 0.5 and raw["metadata"]["tinyinterp"]["edge_threshold"] == 0.9
    assert f"top paths to {target!r}" in capsys.readouterr().out


def test_bad_input_is_one_line_and_writes_nothing(run, tmp_path, tiny_tokenizer, capsys):
    graphs = runlayout.graphs_dir(run)
    long_word = next(w for w in (" Lily and Tom", " park ball") if len(tiny_tokenizer.encode(w)) > 1)
    _fails(["attribute", str(run), PROMPT, "--target", long_word, "--no-progress"], capsys, "--target", "not one")
    _fails(["attribute", str(run), "Lily " * 200, "--no-progress"], capsys, "context")
    _fails(["attribute", str(run), PROMPT, "--transcoders", str(tmp_path / "none"), "--no-progress"], capsys,
           "--transcoders", "no transcoder set")
    other = build_model("gpt-neo", seed=3, tokenizer=tiny_tokenizer, n_layers=1)
    save_transcoder_set(random_transcoders(other), tmp_path / "one-layer")
    _fails(["attribute", str(run), PROMPT, "--transcoders", str(tmp_path / "one-layer"), "--no-progress"], capsys)
    assert not graphs.exists()
    with pytest.raises(SystemExit):
        main(["attribute", str(run), PROMPT, "--node-threshold", "2"])
    assert "between 0 and 1" in capsys.readouterr().err


def test_graph_methods_delegate(run, tmp_path, tiny_tokenizer):
    model = rundir.load_run(run).eval()
    graph = attribute(model, random_transcoders(model, seed=1), PROMPT)
    frame = graph.to_frame()
    assert len(frame) == graph.n_nodes and set(frame["kind"]) == {"feature", "error", "embedding", "logit"}
    paths = graph.top_paths(3)
    assert 1 <= len(paths) <= 3 and paths[0].score >= paths[-1].score
    assert graph.save(tmp_path / "x.json").is_file() and load_graph_json(tmp_path / "x.json").slug == "x"


def test_interventions_next_to_the_graphs_prediction(run):
    """A last-layer feature at the last position reaches the logits by its direct edge only. A small steer:
    the graph predicts edge × Δa / a (LayerNorm frozen); the real model moves by the first-order change
    through the live final LayerNorm, computed here by hand as a Jacobian-vector product."""
    model = rundir.load_run(run).eval().double()
    transcoders = random_transcoders(model, seed=1)
    graph = attribute(model, transcoders, PROMPT)
    last_layer, last_pos = model.cfg.n_layers - 1, graph.n_pos - 1
    feats = graph.active_features[graph.selected_features]
    node = int(((feats[:, 0] == last_layer) & (feats[:, 1] == last_pos)).nonzero()[0, 0])
    layer, pos, feature = feats[node].tolist()
    eps = 1e-5
    step = eps * float(graph.activation_values[node])
    iv = FeatureIntervention(layer, feature, pos=pos, mode="steer", value=step)
    ids = graph.logit_tokens.tolist()
    result = intervene(model, transcoders, PROMPT, [iv], ids, graph=graph)
    expected = graph.adjacency_matrix[graph.logit_offset:, node].double() * eps
    torch.testing.assert_close(result.predicted, expected, rtol=1e-6, atol=1e-12)

    _, cache = model.run_with_cache(graph.input_tokens[None])
    resid = cache[f"blocks.{last_layer}.hook_resid_post"][0, -1]

    def centred_logits(r):
        logits = model.ln_final.normalize(r) @ model.W_U + model.b_U
        return (logits - logits.mean())[ids]

    _, first_order = torch.autograd.functional.jvp(centred_logits, resid, step * transcoders[layer].W_dec[feature])
    torch.testing.assert_close(result.measured, first_order, rtol=1e-4, atol=1e-4 * float(first_order.abs().max()))
    assert not torch.allclose(result.measured, result.predicted, rtol=1e-3)  # the frozen scale is an approximation
    assert result.tokens == graph.input_tokens.tolist()
