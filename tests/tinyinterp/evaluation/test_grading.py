"""The grader against the local OpenAI-compatible test server: faults, malformed grades, cache, cost, CI, curve."""

from __future__ import annotations

import json
import math

import pytest

from tests.support.openai_server import openai_server
from tinyinterp.evaluation import pipeline
from tinyinterp.evaluation.completions import CompletionConfig, CompletionSet, completions_path, eval_dir
from tinyinterp.evaluation.grading import GRADES_FILE, Grader, GraderConfig, mean_ci, summarize
from tinyinterp.evaluation.prompts import EvalPrompt
from tinyinterp.models.generation import SamplingConfig
from tinyinterp.io.jsonl import read_jsonl
from tinyinterp.llm import LLMClient, LLMConfig
from tinyinterp.runs.rundir import read_json

PROMPTS = [EvalPrompt("Once upon a time, Tom saw a", id="a"), EvalPrompt("Lily was tired, so she went", id="b"),
           EvalPrompt("Words: dog, happy\nStory: ", id="c", kind="instruct", words=["dog", "happy"])]
CFG = CompletionConfig(n=2, sampling=SamplingConfig(max_new_tokens=12))


def _story_of(request: dict) -> str:
    return request["messages"][0]["content"]


def grade_for(turn1: str) -> int:
    """A deterministic grade that differs between completions, so means and CIs are not trivial."""
    return sum(map(ord, turn1)) % 11


class Grading:
    """reply_fn: an assessment for turn 1, grades for turn 2; malformed for chosen stories."""

    def __init__(self, garbage_always=(), garbage_once=()):
        self.garbage_always, self.garbage_once = set(garbage_always), set(garbage_once)

    def __call__(self, request: dict) -> str:
        if len(request["messages"]) == 1 or request["messages"][-1]["role"] != "user" or \
                not request["messages"][-1]["content"].startswith("Now, grade"):
            return "The completion is short but grammatical."
        turn1 = _story_of(request)
        g = grade_for(turn1)
        if any(s in turn1 for s in self.garbage_always):
            return "I am sorry, I cannot give numbers for this."
        for s in list(self.garbage_once):
            if s in turn1:
                self.garbage_once.discard(s)
                return "Grammar: excellent!"
        if "response_format" in request:
            return json.dumps({"grammar": g, "creativity": 5, "consistency": 10 - g, "plot": 7, "age_group": "C"})
        return f"Grammar: {g}/10, Creativity: 5/10, Consistency: {10 - g}/10, Age group: C (6-7)"


def _client(url: str) -> LLMClient:
    return LLMClient(LLMConfig(base_url=url, api_key="test", model="gpt-4o-mini", backoff_base_s=0.01,
                               backoff_max_s=0.05, timeout_s=2.0, max_retries=4, max_concurrency=4))


def test_grader_with_faults_malformed_replies_cache_and_cost(fresh_run):
    cs = pipeline.complete(fresh_run, PROMPTS, CFG)
    records = cs.records
    out_path = eval_dir(fresh_run) / GRADES_FILE
    bad, flaky = records[1]["completion"], records[2]["completion"]
    reply = Grading(garbage_always=[bad], garbage_once=[flaky])
    with openai_server(reply) as server:
        for kind in ("429", "500", "drop", "malformed"):
            server.inject(kind, times=1, retry_after=0.01)
        results = Grader(_client(server.url)).grade(records, out_path=out_path)
        assert server.pending_faults() == 0 and sum(server.faults_applied().values()) == 4

        status = [r["status"] for r in results]
        assert status[1] == "unparseable" and status.count("ok") == len(records) - 1
        assert results[1]["grades"] is None and results[1]["grade_requests"] == 3  # 1 + parse_retries, then flagged
        assert results[2]["grade_requests"] == 2  # one garbage reply, then parsed
        # structured output was used, and the graded values are what the server said
        ok = [r for r in results if r["status"] == "ok"]
        for r, rec in zip(results, records):
            if r["status"] == "ok":
                assert r["grades"]["plot"] == 7 and r["grades"]["age_group"] == "C"
                assert r["grades"]["grammar"] + r["grades"]["consistency"] == 10
        assert all(r["cost_usd"] > 0 for r in results)

        # The unparseable one is excluded from the mean, never counted as 0.
        summary = summarize(results)["final"]
        grammar = [r["grades"]["grammar"] for r in ok]
        by_prompt: dict[str, list[float]] = {}
        for r in ok:
            by_prompt.setdefault(r["prompt_id"], []).append(r["grades"]["grammar"])
        expected = sum(sum(v) / len(v) for v in by_prompt.values()) / len(by_prompt)
        assert summary["scores"]["grammar"]["mean"] == pytest.approx(expected)
        assert summary["scores"]["grammar"]["n"] == len(grammar) == len(records) - 1
        assert (summary["n_unparseable"], summary["n_error"], summary["n_ok"]) == (1, 0, len(records) - 1)
        assert summary["age_groups"]["C"] == len(ok)

        # Rerun: ok results come from the cache; only the flagged one is asked again.
        before = len(server.chat_requests())
        reply.garbage_always.clear()
        again = Grader(_client(server.url)).grade(records, out_path=out_path)
        assert len(server.chat_requests()) - before == 2  # turn 1 + turn 2 of the flagged completion
        assert all(r["status"] == "ok" for r in again) and sum(bool(r.get("cached")) for r in again) == len(records) - 1
    assert len([r for r in read_jsonl(out_path) if r["status"] == "ok"]) == len(records)


def test_text_fallback_when_server_has_no_structured_output(fresh_run):
    records = pipeline.complete(fresh_run, PROMPTS[:1], CFG).records
    with openai_server(Grading(), supports_json_schema=False) as server:
        results = Grader(_client(server.url)).grade(records)
        assert all(r["status"] == "ok" and r["grades"]["plot"] is None for r in results)  # text reply: no plot line
        requests = [r.json for r in server.chat_requests()]
        assert sum("response_format" in r for r in requests) == 1  # refused once, then plain text
        # turn 2 carries the paper's two-turn history: user turn 1, the assessment, user turn 2
        roles = [m["role"] for m in requests[-1]["messages"]]
        assert roles == ["user", "assistant", "user"]


def test_instruct_prompts_use_the_instruct_variant(fresh_run):
    records = pipeline.complete(fresh_run, PROMPTS[2:], CFG).records
    with openai_server(Grading()) as server:
        results = Grader(_client(server.url), GraderConfig(structured="off")).grade(records)
        first = server.chat_requests()[0].json["messages"][0]["content"]
    assert first.startswith("Your task is to evaluate the performance of a student.")
    assert "The story should contain the words: dog, happy." in first
    assert {r["variant"] for r in results} == {"instruct"}


def test_server_down_is_an_error_not_a_zero(fresh_run):
    records = pipeline.complete(fresh_run, PROMPTS[:1], CFG).records
    with openai_server(Grading()) as server:
        server.inject("500", times=100)
        client = LLMClient(LLMConfig(base_url=server.url, api_key="t", model="gpt-4o-mini", backoff_base_s=0.001,
                                     backoff_max_s=0.002, max_retries=1))
        results = Grader(client).grade(records)
    assert {r["status"] for r in results} == {"error"} and summarize(results)["final"]["scores"]["grammar"]["mean"] is None


def test_mean_ci_over_prompt_clusters():
    out = mean_ci({"a": [2.0, 4.0], "b": [6.0], "c": [8.0, 8.0]})
    means = [3.0, 6.0, 8.0]
    sd = math.sqrt(sum((m - 17 / 3) ** 2 for m in means) / 2)
    assert out["mean"] == pytest.approx(17 / 3)
    assert out["ci_high"] - out["mean"] == pytest.approx(4.303 * sd / math.sqrt(3))
    assert mean_ci({"a": [5.0]})["ci_low"] is None


def test_cli_grade_all_checkpoints_curve(fresh_run, capsys):
    from tinyinterp.evaluation.cli import main

    with openai_server(Grading()) as server:
        rc = main(["eval", "grade", "--run", str(fresh_run), "--all-checkpoints", "--base-url", server.url,
                   "--grader-model", "gpt-4o-mini", "--prompts", str(_prompt_file(fresh_run)), "--n", "2",
                   "--max-new-tokens", "8", "--no-progress"])
    assert rc == 0
    curve = read_json(eval_dir(fresh_run) / "grade_curve.json")
    assert [p["tokens_seen"] for p in curve["points"]] == [1000, 2000] and curve["x_label"] == "tokens seen"
    assert all(p["grammar"]["mean"] is not None for p in curve["points"])
    assert (eval_dir(fresh_run) / "grade_curve.png").stat().st_size > 1000
    for tag in ("step_00000001", "step_00000002"):
        assert len(CompletionSet.load(completions_path(fresh_run, tag)).records) == 4
    assert "cost this run: $" in capsys.readouterr().out


def _prompt_file(run):
    path = run / "prompts.yaml"
    path.write_text("- Once upon a time, Tom saw a\n- Lily was tired, so she went\n", encoding="utf-8")
    return path


def test_cli_grade_honours_max_prompts_and_n_when_completions_exist(fresh_run):
    """Issue 10: with a completions file present, --max-prompts 2 --n 1 graded every completion in it."""
    from tinyinterp.evaluation.cli import main

    prompts = fresh_run / "three.yaml"
    prompts.write_text("- Once upon a time, Tom saw a\n- Lily was tired, so she went\n- Ben had a big\n",
                       encoding="utf-8")
    common = ["--run", str(fresh_run), "--prompts", str(prompts), "--max-new-tokens", "6", "--no-progress"]
    assert main(["eval", "complete", *common, "--n", "3"]) == 0
    assert len(CompletionSet.load(completions_path(fresh_run)).records) == 9
    with openai_server(Grading()) as server:
        assert main(["eval", "grade", *common, "--base-url", server.url, "--grader-model", "gpt-4o-mini",
                     "--max-prompts", "2", "--n", "1"]) == 0
        n_requests = len(server.chat_requests())
    graded = read_jsonl(eval_dir(fresh_run) / GRADES_FILE)
    assert sorted((r["prompt_id"], r["sample"]) for r in graded) == [("p00", 0), ("p01", 0)]
    assert n_requests == 2 * 2  # two turns per graded completion
    summary = read_json(eval_dir(fresh_run) / "grades_summary.json")["checkpoints"]["final"]
    assert summary["n"] == 2


def test_a_damaged_line_in_the_grades_log_is_skipped_and_reported(fresh_run, caplog):
    """Issue 18.17: one bad line in grades.jsonl stopped `eval grade` with advice to rerun training."""
    from tinyinterp.evaluation.cli import main

    common = ["--run", str(fresh_run), "--prompts", str(_prompt_file(fresh_run)), "--max-new-tokens", "6",
              "--no-progress", "--n", "1"]
    with openai_server(Grading()) as server:
        assert main(["eval", "grade", *common, "--base-url", server.url, "--grader-model", "gpt-4o-mini"]) == 0
        log_path = eval_dir(fresh_run) / GRADES_FILE
        good = log_path.read_text(encoding="utf-8").splitlines()
        damaged = "\n".join([good[0], '{"key": "half a rec', "[1, 2]", '{"status": "ok"}', *good[1:]]) + "\n"
        log_path.write_text(damaged, encoding="utf-8")
        before = len(server.chat_requests())
        with caplog.at_level("WARNING"):
            assert main(["eval", "grade", *common, "--base-url", server.url, "--grader-model", "gpt-4o-mini"]) == 0
        assert len(server.chat_requests()) == before  # both completions were still found in the cache
    assert log_path.read_text(encoding="utf-8") == damaged  # nothing already written changed
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(str(log_path) in w and ":2:" in w for w in warned) and not any("tinyinterp train" in w for w in warned)
