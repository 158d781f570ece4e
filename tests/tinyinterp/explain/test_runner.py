"""The explain → simulate → score runner against the crude-LLM server: planted neurons, faults, flags."""

from __future__ import annotations

import json

import pytest

from tests.support.explain_server import ExplainServer, explain_server
from tests.tinyinterp.explain.conftest import NAME_NEURON, PLANT_LAYER, RANDOM_NEURON
from tinyinterp.explain import ExplainRunConfig, ExplainRunner, load_explanations, select_neurons
from tinyinterp.errors import TinyinterpError
from tinyinterp.llm import LLMClient, LLMConfig

PAIRS = [(PLANT_LAYER, NAME_NEURON), (PLANT_LAYER, RANDOM_NEURON)]


def _client(server, **kw):
    return LLMClient(LLMConfig(base_url=server.url, model="gpt-4o-mini", backoff_base_s=0.01, **kw))


def _by_id(path):
    return {r["id"]: r for r in map(json.loads, open(path))}


def test_baseline_scores_name_neuron_near_one_and_random_near_zero(planted, tmp_path):
    model, index = planted
    summary = ExplainRunner(model, index, ExplainRunConfig(neurons=PAIRS), tmp_path).run()
    assert summary["done"] == 2 and summary["llm"] is None
    recs = _by_id(tmp_path / "baseline.jsonl")
    names = recs[f"L{PLANT_LAYER}N{NAME_NEURON}"]
    assert names["explanation"].startswith("fires on names: ")
    assert names["score"] > 0.9
    assert abs(recs[f"L{PLANT_LAYER}N{RANDOM_NEURON}"]["score"]) < 0.3


@pytest.mark.parametrize("logprobs", [True, False])
def test_llm_scores_planted_neurons(planted, tmp_path, logprobs):
    model, index = planted
    with explain_server(logprobs=logprobs) as server:
        summary = ExplainRunner(model, index, ExplainRunConfig(explainer="llm", neurons=PAIRS), tmp_path,
                                _client(server)).run()
        sims = server.requests_of("simulate") + server.requests_of("simulate_json")
    assert summary["done"] == 2 and summary["failed"] == 0 and summary["llm"]["cost_usd"] > 0
    recs = _by_id(tmp_path / "llm-gpt-4o-mini.jsonl")
    names, rand = recs[f"L{PLANT_LAYER}N{NAME_NEURON}"], recs[f"L{PLANT_LAYER}N{RANDOM_NEURON}"]
    assert names["score"] > 0.95 and abs(rand["score"]) < 0.3
    assert names["simulation"] == ["logprobs" if logprobs else "json"]
    assert all(s.json.get("logprobs") for s in server.requests_of("simulate"))
    # without logprobs, only one probing request asks for them; the rest go straight to JSON
    assert len(server.requests_of("simulate")) == (20 if logprobs else 1)
    assert len(sims) == (20 if logprobs else 21)
    frame = load_explanations(tmp_path.parent / "nope")  # a run without explanations: empty, not an error
    assert frame.empty


def test_transport_faults_are_retried_and_usage_counted(planted, tmp_path):
    model, index = planted
    with explain_server() as server:
        server.inject("429", times=2, retry_after=0.01)
        server.inject("500", times=2)
        server.inject("drop", times=1)
        server.inject("malformed", times=1)
        client = _client(server)
        summary = ExplainRunner(model, index, ExplainRunConfig(explainer="llm", neurons=PAIRS[:1]), tmp_path,
                                client).run()
        assert server.faults_applied() == {"429": 2, "500": 2, "drop": 1, "malformed": 1}
    assert summary["done"] == 1 and summary["llm"]["retries"] == 6
    assert _by_id(tmp_path / "llm-gpt-4o-mini.jsonl")[f"L{PLANT_LAYER}N{NAME_NEURON}"]["score"] > 0.95


@pytest.mark.parametrize("logprobs", [True, False])
@pytest.mark.parametrize("fault", ["short", "range", "text"])
def test_malformed_simulations_are_reasked_once_then_flagged_never_zero(planted, tmp_path, logprobs, fault):
    model, index = planted
    with explain_server(logprobs=logprobs, sim_fault=lambda req: fault) as server:
        summary = ExplainRunner(model, index, ExplainRunConfig(explainer="llm", neurons=PAIRS[:1], simulation=
                                "logprobs" if logprobs else "json"), tmp_path, _client(server)).run()
        n_sim = len(server.requests_of("simulate") + server.requests_of("simulate_json"))
    rec = _by_id(tmp_path / "llm-gpt-4o-mini.jsonl")[f"L{PLANT_LAYER}N{NAME_NEURON}"]
    assert summary["flagged"] == 1 and rec["status"] == "flagged"
    assert n_sim == 2 * 10  # every record asked twice (the re-ask), never more
    assert rec["score"] is None and rec["n_flagged"] == 10 and rec["per_record"] == [None] * 10
    assert len(rec["flag_reasons"]) == 10 and "after re-asking" in rec["flag_reasons"][0]


def test_a_malformed_first_reply_is_fixed_by_the_reask(planted, tmp_path):
    model, index = planted

    def once(req):  # malformed on the first ask of each record only (re-asks carry more messages)
        return "short" if len(req["messages"]) == 6 else None

    with explain_server(sim_fault=once) as server:
        ExplainRunner(model, index, ExplainRunConfig(explainer="llm", neurons=PAIRS[:1]), tmp_path,
                      _client(server)).run()
        n_sim = len(server.requests_of("simulate"))
    rec = _by_id(tmp_path / "llm-gpt-4o-mini.jsonl")[f"L{PLANT_LAYER}N{NAME_NEURON}"]
    assert rec["status"] == "ok" and n_sim == 20 and rec["score"] > 0.95 and rec["requests"] == 21


def test_selection_order_and_limits(planted):
    _, index = planted
    L, N = index.n_layers, index.d_mlp
    assert len(select_neurons(L, N, ExplainRunConfig())) == L * N
    assert select_neurons(L, N, ExplainRunConfig(layers=[1], neurons=[(None, 3), (0, 2)])) == [(1, 3), (0, 2)]
    shuffled = select_neurons(L, N, ExplainRunConfig(top_by="random", max_neurons=5, seed=1))
    assert len(shuffled) == 5 and shuffled == select_neurons(L, N, ExplainRunConfig(top_by="random", max_neurons=5, seed=1))
    assert shuffled != select_neurons(L, N, ExplainRunConfig(max_neurons=5))
    with pytest.raises(TinyinterpError, match="--layers"):
        select_neurons(L, N, ExplainRunConfig(layers=[L]))
    with pytest.raises(TinyinterpError, match="--neurons"):
        select_neurons(L, N, ExplainRunConfig(neurons=[(0, N)]))
    with pytest.raises(TinyinterpError, match="purity"):
        select_neurons(L, N, ExplainRunConfig(top_by="purity"))


def test_refused_explanations_are_retried_then_logged_as_errors(planted, tmp_path):
    model, index = planted
    refuse = lambda req: "I'm sorry, but I can't help with that."  # noqa: E731
    with explain_server() as server:
        server.inject("bad_content", times=2, content="I'm sorry, but I can't help with that.",
                      match=lambda req: ExplainServer.kind(req) == "explain")
        summary = ExplainRunner(model, index, ExplainRunConfig(explainer="llm", neurons=PAIRS[:1]), tmp_path,
                                _client(server)).run()
        assert len(server.requests_of("explain")) == 3  # two refusals retried, the third reply is used
    assert summary["done"] == 1 and summary["llm"]["retry_reasons"] == {"invalid_content": 2}
    with explain_server() as server:
        server.reply_fn = refuse  # every reply is a refusal
        summary = ExplainRunner(model, index, ExplainRunConfig(explainer="llm", neurons=PAIRS[1:]), tmp_path,
                                _client(server, max_retries=2)).run()
    assert summary["failed"] == 1 and summary["done"] == 0
    errors = [json.loads(line) for line in open(tmp_path / "llm-gpt-4o-mini.errors.jsonl")]
    assert errors[0]["id"] == f"L{PLANT_LAYER}N{RANDOM_NEURON}" and "failed after 3 attempts" in errors[0]["error"]


MALFORMED = {  # issue 18.6: each ended the whole run with a traceback
    "usage is a string": {"mutate": lambda b: {**b, "usage": "lots"}},
    "choices is a string": {"mutate": lambda b: {**b, "choices": "oops"}},
    "logprobs is a list": {"mutate": lambda b: _replace_logprobs(b, [1, 2])},
    "logprobs is a string": {"mutate": lambda b: _replace_logprobs(b, "none")},
    "a logprob of 1e6": {"mutate": lambda b: _huge_logprobs(b)},
    "JSON nested too deep": {"raw": b'{"choices": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"},
}


def _replace_logprobs(body, value):
    body["choices"][0]["logprobs"] = value
    return body


def _huge_logprobs(body):
    for item in (body["choices"][0].get("logprobs") or {}).get("content") or []:
        for top in item["top_logprobs"]:
            top["logprob"] = 1e6
    return body


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_reply_is_retried_or_flagged_and_the_run_goes_on(planted, tmp_path, case):
    model, index = planted
    with explain_server() as server:
        # A neuron finished earlier: its line must come out of the run byte for byte.
        ExplainRunner(model, index, ExplainRunConfig(explainer="llm", neurons=PAIRS[1:]), tmp_path, _client(server)).run()
        before = (tmp_path / "llm-gpt-4o-mini.jsonl").read_bytes()
        for kind in ("explain", "simulate"):
            server.inject("body", times=2, match=lambda req, kind=kind: ExplainServer.kind(req) == kind, **MALFORMED[case])
        summary = ExplainRunner(model, index, ExplainRunConfig(explainer="llm", neurons=PAIRS), tmp_path,
                                _client(server)).run()
        assert server.faults_applied()["body"] >= 3  # an explain reply that is still usable is not asked again
    after = (tmp_path / "llm-gpt-4o-mini.jsonl").read_bytes()
    assert after.startswith(before)
    recs = _by_id(tmp_path / "llm-gpt-4o-mini.jsonl")
    name = recs[f"L{PLANT_LAYER}N{NAME_NEURON}"]
    assert summary["failed"] == 0 and name["status"] in ("ok", "flagged")
    if case == "usage is a string":  # the reply itself is usable: read, with usage counted as 0
        assert name["status"] == "ok" and name["score"] > 0.95
