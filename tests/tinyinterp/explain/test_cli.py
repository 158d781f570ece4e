"""``tinyinterp explain``: baseline end to end, dry-run cost estimate, errors, and resuming after kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.explain_server import explain_server
from tinyinterp.cli import main
from tinyinterp.explain import load_explanations, score_summary
from tinyinterp.explain.results import finished_ids

REPO = Path(__file__).resolve().parents[3]


def test_baseline_end_to_end_and_summary(cli_run, capsys):
    assert main(["explain", str(cli_run), "--layers", "1", "--max-neurons", "6", "--no-progress"]) == 0
    frame = load_explanations(cli_run)
    assert len(frame) == 6 and set(frame.explainer) == {"baseline"} and frame.explanation.str.startswith("fires on").all()
    assert main(["explain", str(cli_run), "--layers", "1", "--max-neurons", "6", "--no-progress"]) == 0
    assert '"skipped": 6' in capsys.readouterr().out  # nothing is redone
    assert main(["explain", str(cli_run), "--summary"]) == 0
    summary = score_summary(cli_run)
    assert list(summary.layer) == [1] and int(summary.n.iloc[0]) == frame.score.notna().sum()


def test_top_by_purity_orders_by_type_purity(cli_run):
    from tinyinterp.explain import ExplainRunConfig
    from tinyinterp.explain.runner import selected_neurons
    from tinyinterp.interp import NeuronIndex, PurityResult

    index = NeuronIndex.load(cli_run / "analysis" / "neurons")
    order = selected_neurons(index, ExplainRunConfig(top_by="purity", max_neurons=10))
    tp = PurityResult.load(index.path).type_purity
    values = [tp[p] for p in order]
    assert values == sorted(values, reverse=True)


def test_dry_run_prints_estimate_and_sends_nothing(cli_run, capsys):
    with explain_server() as server:
        code = main(["explain", str(cli_run), "--explainer", "llm", "--dry-run", "--base-url", server.url,
                     "--model", "gpt-4o-mini", "--layers", "0"])
        assert server.chat_requests() == []
    out = capsys.readouterr().out
    assert code == 0 and "neurons to explain" in out and "estimate for" in out and "gpt-4o-mini" in out
    assert "~$" in out


def test_dry_run_on_a_preset_name(shared_data, capsys):
    assert main(["explain", "test-small", "--dry-run", "--explainer", "llm", "--model", "gpt-4o-mini"]) == 0
    out = capsys.readouterr().out
    assert "2 layers x 256 neurons" in out and "estimate for 512 neurons with gpt-4o-mini" in out


@pytest.mark.parametrize("argv, message", [
    (["explain", "no/such/run"], "not a run directory"),
    (["explain", "{run}", "--layers", "7"], "--layers"),
    (["explain", "{run}", "--batch"], "--batch needs --explainer llm"),
])
def test_bad_input_is_one_line_error(cli_run, capsys, argv, message):
    assert main([a.format(run=cli_run) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


@pytest.mark.slow
def test_resumes_after_kill_9_without_redoing_finished_neurons(cli_run, tmp_path):
    out = tmp_path / "expl"
    path = out / "llm-gpt-4o-mini.jsonl"
    with explain_server(latency=0.05) as server:
        argv = ["explain", str(cli_run), "--explainer", "llm", "--base-url", server.url, "--model", "gpt-4o-mini",
                "--layers", "0", "--max-neurons", "12", "--concurrency", "2", "--neuron-concurrency", "2",
                "--out", str(out), "--no-progress"]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
        proc = subprocess.Popen([sys.executable, "-m", "tinyinterp.cli", *argv], env=env, cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while time.time() < deadline and (not path.exists() or path.read_bytes().count(b"\n") < 3):
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        done_at_kill = finished_ids(path)
        assert 3 <= len(done_at_kill) < 12
        explains_before = len(server.requests_of("explain"))
        assert main(argv) == 0
        explains_after = len(server.requests_of("explain"))
    ids = [line.split('"id": "')[1].split('"')[0] for line in path.read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 12  # every neuron once, none twice
    assert explains_after - explains_before == 12 - len(done_at_kill)  # finished neurons were not asked again
