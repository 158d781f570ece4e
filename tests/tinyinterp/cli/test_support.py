"""The one CLI error path and the one boolean environment-flag rule, as every program sees them."""

from __future__ import annotations

import pytest

from tinyinterp.cli.support import run_cli
from tinyinterp.envflags import env_flag
from tinyinterp.errors import RunDirError


def test_a_user_error_is_one_line_on_stderr_and_exit_code_2(capsys):
    def work():
        raise RunDirError("runs/x/config.json: file not found\n(second line)")

    assert run_cli(work) == 2
    err = capsys.readouterr().err
    assert err == "error: runs/x/config.json: file not found (second line)\n"
    assert run_cli(lambda: None) == 0 and run_cli(lambda: 3) == 3
    assert run_cli(lambda: int("x"), also_catch=(ValueError,)) == 2
    with pytest.raises(ValueError):  # not declared as bad input: a bug keeps its traceback
        run_cli(lambda: int("x"))


@pytest.mark.parametrize(("value", "on"), [
    (None, False), ("", False), ("0", False), ("false", False), ("No", False), (" off ", False),
    ("1", True), ("true", True), ("YES", True), ("on", True), ("woodpecker", True),
])
def test_env_flag_one_rule(monkeypatch, value, on):
    if value is None:
        monkeypatch.delenv("TINYINTERP_TEST_FLAG", raising=False)
    else:
        monkeypatch.setenv("TINYINTERP_TEST_FLAG", value)
    assert env_flag("TINYINTERP_TEST_FLAG") is on


@pytest.mark.parametrize(("ci", "on"), [("off", False), ("0", False), ("true", True), ("github", True)])
def test_demo_app_and_hub_read_a_flag_the_same_way(monkeypatch, ci, on):
    from apps.cli import NO_SERVE_ENV, serving_disabled
    from tinyinterp.cli.demo import parse_args
    from tinyinterp.hf.hub import offline_mode

    monkeypatch.delenv(NO_SERVE_ENV, raising=False)
    monkeypatch.setenv("CI", ci)
    monkeypatch.setenv("HF_HUB_OFFLINE", ci)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    assert parse_args([]).no_serve is on
    assert serving_disabled() is on
    assert offline_mode() is on
