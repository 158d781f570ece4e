"""Batch API mode against the fake server: two phases, resumable, bad lines re-simulated not zeroed."""

from __future__ import annotations

import json

from tests.support.explain_server import explain_server
from tests.support.planted_neurons import NAME_NEURON, PLANT_LAYER, RANDOM_NEURON
from tinyinterp.explain import ExplainRunConfig
from tinyinterp.explain.batch import BatchExplainConfig, run_batch
from tinyinterp.llm import LLMClient, LLMConfig

PAIRS = [(PLANT_LAYER, NAME_NEURON), (PLANT_LAYER, RANDOM_NEURON)]


def _client(server):
    return LLMClient(LLMConfig(base_url=server.url, model="gpt-4o-mini", backoff_base_s=0.01))


def test_batch_mode_explains_and_scores_in_two_phases_and_resumes(planted, tmp_path):
    model, index = planted
    run = ExplainRunConfig(explainer="llm", neurons=PAIRS)
    with explain_server(batch_polls_to_complete=2) as server:
        first = run_batch(model, index, BatchExplainConfig(run, tmp_path, wait=False, poll_interval_s=0.01),
                          _client(server))
        assert first["phase"] == "explain" and first["pending"] == 2  # submitted, not finished
        done = run_batch(model, index, BatchExplainConfig(run, tmp_path, poll_interval_s=0.01), _client(server))
        assert done["phase"] == "done" and done["pending"] == 0
        assert len(server.batches) == 2 and server.chat_requests() == []  # everything went through batches
        again = run_batch(model, index, BatchExplainConfig(run, tmp_path, poll_interval_s=0.01), _client(server))
        assert len(server.batches) == 2 and again["pending"] == 0  # nothing resubmitted
    recs = {r["id"]: r for r in map(json.loads, open(tmp_path / "llm-gpt-4o-mini.jsonl"))}
    assert set(recs) == {f"L{PLANT_LAYER}N{NAME_NEURON}", f"L{PLANT_LAYER}N{RANDOM_NEURON}"}
    assert recs[f"L{PLANT_LAYER}N{NAME_NEURON}"]["score"] > 0.95
    assert abs(recs[f"L{PLANT_LAYER}N{RANDOM_NEURON}"]["score"]) < 0.3
    assert done["llm"]["cost_usd"] > 0


def test_failed_batch_lines_are_simulated_again_synchronously(planted, tmp_path):
    model, index = planted
    run = ExplainRunConfig(explainer="llm", neurons=PAIRS[:1])
    fail = lambda item: item["custom_id"].endswith(":3")  # noqa: E731  one simulation line fails in the batch
    with explain_server(batch_fail=fail) as server:
        summary = run_batch(model, index, BatchExplainConfig(run, tmp_path, poll_interval_s=0.01), _client(server))
        assert summary["phase"] == "done" and len(server.requests_of("simulate")) == 1
    rec = json.loads(open(tmp_path / "llm-gpt-4o-mini.jsonl").readline())
    assert rec["status"] == "ok" and rec["n_flagged"] == 0 and rec["score"] > 0.95
