"""Story runner against the local OpenAI-compatible server: faults, exactly-once, resume, torn lines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from datagen.prompts import make_prompt_specs
from datagen.runner import StoryRunConfig, errors_path_for, generate_stories
from tests.support.openai_server import default_reply, openai_server
from tinyinterp.llm import LLMClient, LLMConfig

REPO = Path(__file__).resolve().parents[2]


def fast_client(server, **kw) -> LLMClient:
    cfg = dict(base_url=server.url, api_key="sk-test", timeout_s=0.5, backoff_base_s=0.005, backoff_max_s=0.05,
               max_retries=4, max_concurrency=4)
    cfg.update(kw)
    return LLMClient(LLMConfig(**cfg))


def lines_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]  # raises on any unreadable line


def expected_ids(n: int, seed: int = 0) -> list[str]:
    return [s.id for s in make_prompt_specs(n, seed)]


def test_all_faults_every_story_exactly_once(tmp_path):
    out = tmp_path / "stories.jsonl"
    with openai_server() as server:
        server.inject("429", times=3, retry_after=0.01)
        server.inject("500", times=3)
        server.inject("slow", times=2, delay=0.8)
        server.inject("drop", times=2)
        server.inject("malformed", times=2)
        server.inject("bad_content", times=2, content="too short")
        # enough retries that even all 14 faults landing on one story cannot fail it
        client = fast_client(server, max_retries=15)
        summary = generate_stories(StoryRunConfig(out=out, n=20, progress=False), client)
        n_requests = len(server.chat_requests())
        print(f"fault run: requests sent={n_requests} retries={client.stats.retries} "
              f"records written={summary.written} faults={server.faults_applied()}")
        assert server.pending_faults() == 0
        assert n_requests == 20 + 14 == client.stats.requests
        assert client.stats.retries == 14 and client.stats.failures == 0
    records = lines_of(out)
    assert sorted(r["id"] for r in records) == sorted(expected_ids(20))
    assert summary.written == 20 and summary.failed == 0
    specs = {s.id: s for s in make_prompt_specs(20)}
    for r in records:
        assert r["prompt"] == specs[r["id"]].prompt
        assert r["text"] == r["story"] == default_reply({"messages": [{"role": "user", "content": r["prompt"]}]})
        assert r["words"] == {"verb": specs[r["id"]].words.verb, "noun": specs[r["id"]].words.noun,
                              "adjective": specs[r["id"]].words.adjective}


def test_failed_records_are_logged_and_retried_on_rerun(tmp_path):
    out = tmp_path / "stories.jsonl"
    victim = make_prompt_specs(6)[2]
    with openai_server() as server:
        server.inject("500", times=1000, match=lambda req: req["messages"][0]["content"] == victim.prompt)
        summary = generate_stories(StoryRunConfig(out=out, n=6, progress=False), fast_client(server, max_retries=1))
        assert (summary.written, summary.failed) == (5, 1)
        assert [e["id"] for e in lines_of(errors_path_for(out))] == [victim.id]
        assert victim.id not in {r["id"] for r in lines_of(out)}
    with openai_server() as server:
        summary = generate_stories(StoryRunConfig(out=out, n=6, progress=False), fast_client(server))
        assert (summary.already_done, summary.written, summary.failed) == (5, 1, 0)
        assert len(server.chat_requests()) == 1  # only the failed one was asked again
    assert sorted(r["id"] for r in lines_of(out)) == sorted(expected_ids(6))
    # Issue 10: the rerun succeeded, so the errors file must not keep the stale failure.
    assert not errors_path_for(out).exists()


def test_clean_run_creates_no_errors_file_and_a_partial_rerun_keeps_only_live_failures(tmp_path):
    out = tmp_path / "stories.jsonl"
    with openai_server() as server:
        generate_stories(StoryRunConfig(out=out, n=3, progress=False), fast_client(server))
    assert out.exists() and not errors_path_for(out).exists()  # issue 10: was created empty

    out2 = tmp_path / "more.jsonl"
    a, b = make_prompt_specs(4)[1], make_prompt_specs(4)[3]
    victims = {a.prompt, b.prompt}
    with openai_server() as server:
        server.inject("500", times=1000, match=lambda req: req["messages"][0]["content"] in victims)
        generate_stories(StoryRunConfig(out=out2, n=4, progress=False), fast_client(server, max_retries=0))
    assert sorted(e["id"] for e in lines_of(errors_path_for(out2))) == sorted([a.id, b.id])
    victims.discard(a.prompt)  # a is fixed, b still fails
    with openai_server() as server:
        server.inject("500", times=1000, match=lambda req: req["messages"][0]["content"] in victims)
        generate_stories(StoryRunConfig(out=out2, n=4, progress=False), fast_client(server, max_retries=0))
    assert [e["id"] for e in lines_of(errors_path_for(out2))] == [b.id]  # one entry, the live failure


def test_torn_line_and_duplicates_are_repaired(tmp_path):
    out = tmp_path / "stories.jsonl"
    with openai_server() as server:
        generate_stories(StoryRunConfig(out=out, n=4, progress=False), fast_client(server))
    first = out.read_text().splitlines()[0]
    with open(out, "a") as f:  # a duplicate plus a half-written record, as a crash could leave
        f.write(first + "\n" + first[: len(first) // 2])
    with openai_server() as server:
        summary = generate_stories(StoryRunConfig(out=out, n=5, progress=False), fast_client(server))
        assert summary.written == 1 and summary.duplicates_removed == 1
    assert sorted(r["id"] for r in lines_of(out)) == sorted(expected_ids(5))


def test_output_loads_with_datasets(tmp_path):
    datasets = pytest.importorskip("datasets")
    out = tmp_path / "stories.jsonl"
    with openai_server() as server:
        generate_stories(StoryRunConfig(out=out, n=5, progress=False), fast_client(server))
    ds = datasets.load_dataset("json", data_files=str(out), split="train", cache_dir=str(tmp_path / "cache"))
    assert ds.num_rows == 5 and {"id", "text", "prompt", "words", "features"} <= set(ds.column_names)


def _slow_story(req: dict) -> str:
    time.sleep(0.05)
    return default_reply(req)


@pytest.mark.slow
def test_sigkill_mid_run_then_rerun_loses_and_duplicates_nothing(tmp_path):
    out = tmp_path / "stories.jsonl"
    n = 60
    with openai_server(_slow_story) as server:
        cmd = [sys.executable, "-m", "datagen.cli", "stories", "--n", str(n), "--out", str(out),
               "--base-url", server.url, "--concurrency", "2", "--backoff-base", "0.01", "--no-progress"]
        env = dict(os.environ, PYTHONPATH=str(REPO), OPENAI_API_KEY="sk-test")
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 30
        while time.time() < deadline and (not out.exists() or out.read_text().count("\n") < 8):
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        before = {r["id"]: r for r in map(json.loads, filter(None, out.read_text().splitlines()))}
        assert 8 <= len(before) < n, "the kill should land mid-run"
        with open(out, "a") as f:  # make the torn last line certain, not a matter of timing luck
            f.write('{"id": "torn-record", "story": "Once upon a ti')
        rerun = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
        assert rerun.returncode == 0, rerun.stderr
        summary = json.loads(rerun.stdout)
        asked_again = len(server.chat_requests())
    records = lines_of(out)  # every line parses
    ids = [r["id"] for r in records]
    assert sorted(ids) == sorted(expected_ids(n))  # none lost, none duplicated, torn one gone
    assert summary["already_done"] == len(before) and summary["written"] == n - len(before)
    assert all(before[r["id"]] == r for r in records if r["id"] in before)  # finished records untouched
    print(f"SIGKILL test: {len(before)} records before kill, {summary['written']} after rerun, "
          f"{asked_again} chat requests in total")
