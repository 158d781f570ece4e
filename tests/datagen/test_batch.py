"""Batch API mode against the local server's files/batches endpoints: merge, errors, resume per stage."""

from __future__ import annotations

import json

import pytest

from datagen.batch import BatchRun, BatchRunConfig, run_batch
from datagen.prompts import make_prompt_specs
from datagen.runner import StoryRunConfig, errors_path_for
from tests.support.openai_server import openai_server
from tinyinterp.llm import LLMClient, LLMConfig


def client_for(server) -> LLMClient:
    return LLMClient(LLMConfig(base_url=server.url, api_key="k", backoff_base_s=0.005))


def cfg(tmp_path, n=10, **kw) -> BatchRunConfig:
    return BatchRunConfig(stories=StoryRunConfig(out=tmp_path / "s.jsonl", n=n, progress=False),
                          poll_interval_s=0.01, max_requests_per_batch=4, **kw)


def ids_in(path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


def test_batch_merges_records_errors_then_new_round(tmp_path):
    specs = make_prompt_specs(10)
    bad = {specs[1].id, specs[7].id}
    with openai_server(batch_polls_to_complete=3, batch_fail=lambda item: item["custom_id"] in bad) as server:
        server.inject("429", retry_after=0.01, times=1, match=lambda req: False)  # chat path unused in batch mode
        summary = run_batch(cfg(tmp_path), client_for(server))
        assert summary["chunks"] == 3 and summary["statuses"] == ["completed"] * 3
        assert summary["stories_missing"] == 2
        assert sorted(ids_in(tmp_path / "s.jsonl")) == sorted(s.id for s in specs if s.id not in bad)
        assert {e["id"] for e in map(json.loads, errors_path_for(tmp_path / "s.jsonl").read_text().splitlines())} == bad
        uploads = [r for r in server.requests if r.path == "/v1/files"]
        assert len(uploads) == 3 and all(b"purpose" in r.body and b"batch" in r.body for r in uploads)
        server.batch_fail = None
        summary = run_batch(cfg(tmp_path), client_for(server))  # round 2: only the two failures
        assert summary["round"] == 1 and summary["stories_missing"] == 0
    assert sorted(ids_in(tmp_path / "s.jsonl")) == sorted(s.id for s in specs)
    record = json.loads((tmp_path / "s.jsonl").read_text().splitlines()[0])
    assert record["source"] == "batch" and record["text"] == record["story"]


def test_batch_resumes_after_submit_and_after_a_crash_before_merge(tmp_path, monkeypatch):
    with openai_server(batch_polls_to_complete=5) as server:
        first = run_batch(cfg(tmp_path, n=6, wait=False), client_for(server))
        assert first["merged"] == 0 and not (tmp_path / "s.jsonl").exists() or not (tmp_path / "s.jsonl").read_text()
        state = json.loads((tmp_path / "s.jsonl.batch" / "state.json").read_text())
        assert all(c["batch_id"] for c in state["chunks"])

        def crash(self, chunk):
            raise KeyboardInterrupt("killed before merge")

        monkeypatch.setattr(BatchRun, "_merge", crash)
        with pytest.raises(KeyboardInterrupt):
            run_batch(cfg(tmp_path, n=6), client_for(server))
        monkeypatch.undo()
        state = json.loads((tmp_path / "s.jsonl.batch" / "state.json").read_text())
        assert state["chunks"][0]["downloaded"] and not state["chunks"][0]["merged"]
        done = run_batch(cfg(tmp_path, n=6), client_for(server))
        assert done["stories_missing"] == 0
        n_uploads = sum(r.path == "/v1/files" for r in server.requests)
        n_creates = sum(r.path == "/v1/batches" for r in server.requests)
        n_downloads = sum(r.path.endswith("/content") for r in server.requests)
    assert (n_uploads, n_creates) == (2, 2)  # 6 requests / 4 per batch: never re-uploaded or re-created
    assert n_downloads == 2  # each output downloaded once, despite the crash
    assert sorted(ids_in(tmp_path / "s.jsonl")) == sorted(s.id for s in make_prompt_specs(6))


def test_state_of_another_run_is_refused(tmp_path):
    with openai_server(batch_polls_to_complete=100) as server:
        run_batch(cfg(tmp_path, n=3, wait=False), client_for(server))
        with pytest.raises(Exception, match="--n 3"):
            run_batch(cfg(tmp_path, n=5, wait=False), client_for(server))
