"""`make demo` end to end on a small copy of the data: train, stories, analyses, evaluation, app check."""

import json
import re

import pytest

from tests.support import circuit_tracer_schema as schema
from tinyinterp.cli import demo
from tinyinterp.runs import rundir, layout as runlayout
from tinyinterp.evaluation.prompts import load_prompts


def _continuations(printed: str, prompts: list[str]) -> list[str]:
    """The text ``generate`` printed after each prompt in step 2 (``PROMPT + COMPLETION``, one blank line
    after each), without the echoed command line; a prompt missing from the output fails the test."""
    section = printed.split("=== 2. stories")[1].split("=== 3.")[0]
    body = "\n".join(line for line in section.splitlines() if not line.startswith("$ "))
    out = []
    for prompt in prompts:
        assert prompt in body, f"prompt not continued: {prompt[:40]!r}"
        out.append(body.split(prompt, 1)[1].split("\n\n", 1)[0])
    return out


@pytest.fixture
def small_data_dir(shared_data, tmp_path, monkeypatch):
    """A TINYINTERP_DATA folder with the first 150 real stories and the real tokenizer files."""
    data = tmp_path / "data"
    (data / "tinystories").mkdir(parents=True)
    text = (shared_data / "tinystories" / "train-v1-hf-head.txt").read_text(encoding="utf-8")
    stories = text.split("<|endoftext|>")[:150]
    (data / "tinystories" / "train-v1-hf-head.txt").write_text("<|endoftext|>".join(stories) + "<|endoftext|>\n")
    (data / "tinystories" / "train-v2-gpt4-head.txt").write_text(stories[0] + "\n<|endoftext|>\n")
    val = (shared_data / "tinystories" / "validation-hf-head.unsegmented.txt").read_text(encoding="utf-8")[:20_000]
    (data / "tinystories" / "validation-hf-head.unsegmented.txt").write_text(val)
    for name in ("tokenizers", "eval-prompts"):
        (data / name).symlink_to(shared_data / name)
    monkeypatch.setenv("TINYINTERP_DATA", str(data))
    return data


@pytest.mark.slow
def test_demo_runs_every_step_and_leaves_a_complete_run(small_data_dir, tmp_path, capsys):
    out = tmp_path / "runs" / "demo"
    assert demo.main(["--out", str(out), "--preset", "test-small", "--minutes", "0.1", "--no-serve"]) == 0
    printed = capsys.readouterr().out
    assert rundir.is_run_dir(out)
    for step in ("1. train", "2. stories", "3. look inside", "4. evaluation", "5. the app"):
        assert step in printed
    continuations = _continuations(printed, [p.text for p in load_prompts()[: demo.N_DEMO_PROMPTS]])
    new_words = [w for text in continuations for w in re.findall(r"[A-Za-z]+", text)]
    assert len(new_words) >= 5, f"the demo printed its prompts but (almost) no generated text: {continuations}"
    analysis = out / rundir.ANALYSIS_DIR
    assert (analysis / "neurons" / "purity.json").is_file() and (analysis / "heads" / "heads.json").is_file()
    assert any((out / "snapshots").glob("step_*/model.safetensors")), "the demo keeps log-spaced snapshots"
    assert (analysis / "emergence" / "emergence.png").is_file()
    assert any((analysis / "eval").rglob("*.json")), "evaluation results must land in the run directory"
    sae_eval = json.loads((analysis / "dictionaries" / "demo-transcoder" / "eval.json").read_text())
    assert sae_eval["kind"] == "transcoder" and 0 < sae_eval["l0"] <= 16 and sae_eval["n_tokens"] > 0
    # a transcoder of every layer from one pass, and one attribution graph in circuit-tracer's schema
    n_layers = rundir.load_run(out).cfg.n_layers
    transcoders = analysis / "dictionaries" / runlayout.TRANSCODERS_SET
    assert sorted(p.name for p in transcoders.iterdir()) == [runlayout.transcoder_layer_name(i) for i in range(n_layers)]
    graph = json.loads(runlayout.graph_path(out, demo.DEMO_GRAPH_SLUG).read_text())
    assert schema.validate(graph, n_layers) == []
    assert graph["metadata"]["prompt"] == demo.demo_graph_prompt()
    kinds = [n["feature_type"] for n in graph["nodes"]]
    assert "cross layer transcoder" in kinds and kinds.count("logit") >= 1 and graph["links"]
    size = re.search(r"graph: (\d+) nodes, (\d+) edges; pruned: (\d+) nodes, (\d+) edges", printed)
    assert size and int(size[3]) == len(graph["nodes"]) <= int(size[1]) and int(size[4]) <= int(size[2])
    assert "top paths to" in printed
    # the transcoder's features are indexed like neurons and explained with the baseline explainer
    from tinyinterp.explain import load_explanations
    from tinyinterp.interp.feature_index import FeatureIndex

    tc_dir = analysis / "dictionaries" / "demo-transcoder"
    features = FeatureIndex.load(tc_dir)
    assert features.meta["units"] == "features" and features.n_features == 512 and features.meta["n_tokens"] > 0
    assert 0 < float(features.tensors["frac_active"].sum()) <= 16 + 1e-3  # TopK: at most 16 features per token
    assert (tc_dir / "index" / "purity.json").is_file()
    explained = load_explanations(tc_dir, explainer="baseline")
    assert sorted(explained.neuron) == list(range(512)) and set(explained.layer) == {0}
    assert explained.score.notna().any() and explained.explanation.str.startswith("fires on").all()
