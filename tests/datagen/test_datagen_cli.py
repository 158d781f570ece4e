"""``datagen`` CLI: --help for every sub-command, one-line errors, a full stories run via main()."""

from __future__ import annotations

import json

import pytest

from datagen.cli import main
from tests.support.openai_server import openai_server


@pytest.mark.parametrize("sub", ["stories", "instruct", "ood", "batch"])
def test_help(sub, capsys):
    with pytest.raises(SystemExit) as exc:
        main([sub, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--seed" in out and ("--out" in out)


def test_bad_out_is_one_line_error(capsys, tmp_path):
    assert main(["stories", "--n", "2", "--out", str(tmp_path / "s.txt"), "--base-url", "http://127.0.0.1:9/v1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --out") and "\n" not in err


def test_missing_input_is_one_line_error(capsys, tmp_path):
    assert main(["ood", "--input", str(tmp_path / "nope.jsonl"), "--out-dir", str(tmp_path)]) == 2
    assert "nope.jsonl not found" in capsys.readouterr().err


def test_stories_run_and_dry_run(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-cli-secret")
    out = tmp_path / "s.jsonl"
    assert main(["stories", "--n", "3", "--out", str(out), "--dry-run"]) == 0
    prompts = [json.loads(line)["prompt"] for line in capsys.readouterr().out.splitlines()]
    assert len(prompts) == 3 and all(p.startswith("Write a short story (3-5 paragraphs)") for p in prompts)
    with openai_server() as server:
        assert main(["stories", "--n", "3", "--out", str(out), "--base-url", server.url, "--no-progress"]) == 0
        assert sorted(r.json["messages"][0]["content"] for r in server.chat_requests()) == sorted(prompts)
    summary = json.loads(capsys.readouterr().out)
    assert summary["written"] == 3 and "sk-cli-secret" not in json.dumps(summary)
    assert "sk-cli-secret" not in out.read_text()
