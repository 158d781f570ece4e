"""``tinyinterp app``: argument handling, the no-serve check used by ``make demo``, and the serve command."""

from __future__ import annotations

import argparse
import contextlib
import io
import socket

import pytest

from apps import cli


@pytest.fixture(autouse=True)
def _serving_allowed(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv(cli.NO_SERVE_ENV, raising=False)


def test_subcommand_is_registered_with_help():
    parser = argparse.ArgumentParser(prog="tinyinterp")
    cli.add_subparser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["app", "--runs", "somewhere", "--port", "9000", "--no-browser", "--check"])
    assert (args.runs, args.port, args.no_browser, args.check, args.func) == ("somewhere", 9000, True, True, cli.run_app)
    help_text = parser._subparsers._group_actions[0].choices["app"].format_help()
    for option in ("--runs", "--run", "--port", "--host", "--no-browser", "--check"):
        assert option in help_text


def test_bad_runs_root_and_run_are_one_line_errors(runs_root, tmp_path, capsys):
    assert cli.main(["--runs", str(tmp_path / "nope"), "--check"]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
    assert cli.main(["--runs", str(runs_root), "--run", "../../etc", "--check"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: run '../../etc': refused") and err.count("\n") == 1


def test_check_renders_every_page_and_prints_the_url(runs_root):
    # Not capsys: Streamlit re-binds its log handler to the sys.stderr of the moment, which capsys closes.
    with contextlib.redirect_stdout(io.StringIO()) as captured:
        assert cli.main(["--runs", str(runs_root), "--run", "demo", "--check", "--port", "8600"]) == 0
    out = captured.getvalue()
    assert "every page rendered" in out and "http://localhost:8600/?run=demo" in out


@pytest.mark.parametrize("env", [cli.NO_SERVE_ENV, "CI"])
def test_environment_turns_serving_into_a_check(runs_root, monkeypatch, capsys, env):
    calls = []
    monkeypatch.setenv(env, "true")
    monkeypatch.setattr(cli, "check_pages", lambda root, run=None: calls.append((root, run)) or [])
    monkeypatch.setattr(cli.subprocess, "Popen", lambda *a, **k: pytest.fail("must not serve"))
    assert cli.main(["--runs", str(runs_root)]) == 0
    assert calls == [(runs_root.resolve(), None)]
    assert "without serving" in capsys.readouterr().out


def test_check_fails_when_a_page_has_problems(runs_root, monkeypatch, capsys):
    monkeypatch.setattr(cli, "check_pages", lambda root, run=None: ["heads: boom"])
    assert cli.main(["--runs", str(runs_root), "--check"]) == 1
    assert "heads: boom" in capsys.readouterr().err


def test_serve_runs_streamlit_headless_on_localhost(runs_root, monkeypatch, capsys):
    started = {}

    class FakeProcess:
        def __init__(self, cmd, env, **kwargs):
            started.update(cmd=cmd, env=env)

        def wait(self):
            return 0

        def poll(self):  # run_app checks the child has exited before it returns
            return 0

    monkeypatch.setattr(cli.subprocess, "Popen", FakeProcess)
    assert cli.main(["--runs", str(runs_root), "--port", "8611", "--no-browser"]) == 0
    cmd = started["cmd"]
    assert cmd[1:4] == ["-m", "streamlit", "run"] and cmd[4].endswith("apps/app.py")
    flags = dict(zip(cmd[5::2], cmd[6::2]))
    assert flags["--server.headless"] == "true" and flags["--server.address"] == "127.0.0.1"
    assert flags["--server.port"] == "8611" and flags["--browser.gatherUsageStats"] == "false"
    assert started["env"]["TINYINTERP_RUNS"] == str(runs_root.resolve())
    assert "http://localhost:8611/" in capsys.readouterr().out


def test_busy_port_is_refused(runs_root, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert cli.main(["--runs", str(runs_root), "--port", str(port), "--no-browser"]) == 2
    assert f"--port {port}: already in use" in capsys.readouterr().err
