"""One LLM option vocabulary for datagen, eval grade|probes and explain; old names are deprecated aliases."""

from __future__ import annotations

import argparse

import pytest

from tinyinterp.cli import build_parser
from tinyinterp.llm.options import DEPRECATED_ALIASES, add_llm_arguments, client_from_args

LLM_FLAGS = {"--base-url", "--model", "--api-key-env", "--concurrency", "--timeout", "--max-retries",
             "--backoff-base", "--price-in", "--price-out"}


def _sub(parser, *path):
    for name in path:
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    return parser


def _llm_group_flags(parser) -> set[str]:
    group = next(g for g in parser._action_groups if g.title == "LLM server")
    return {s for a in group._group_actions for s in a.option_strings}


@pytest.mark.parametrize("path", [("datagen", "stories"), ("datagen", "instruct"), ("datagen", "batch"),
                                  ("eval", "grade"), ("eval", "probes"), ("explain",)])
def test_every_llm_command_has_the_same_flags(path):
    flags = _llm_group_flags(_sub(build_parser(), *path))
    assert flags == LLM_FLAGS | set(DEPRECATED_ALIASES)


def _parse(argv):
    parser = argparse.ArgumentParser()
    add_llm_arguments(parser)
    return parser.parse_args(argv)


def test_old_names_still_work_and_say_once_which_name_to_use(capsys):
    args = _parse(["--grader-model", "judge-1", "--max-concurrency", "3"])
    assert (args.model, args.concurrency) == ("judge-1", 3)
    err = capsys.readouterr().err.splitlines()
    assert err == ["warning: --grader-model is deprecated; use --model",
                   "warning: --max-concurrency is deprecated; use --concurrency"]
    args = _parse(["--model", "m", "--concurrency", "5"])
    assert (args.model, args.concurrency) == ("m", 5) and capsys.readouterr().err == ""
    help_text = _sub(build_parser(), "eval", "grade").format_help()
    assert "--model" in help_text and "--grader-model" not in help_text  # aliases are hidden from --help


def test_client_takes_the_key_from_the_named_variable_and_the_prices_given(monkeypatch):
    monkeypatch.setenv("MY_LLM_KEY", "sk-test-123")
    args = _parse(["--base-url", "http://127.0.0.1:9/v1", "--model", "m-1", "--api-key-env", "MY_LLM_KEY",
                   "--concurrency", "2", "--timeout", "5", "--max-retries", "1", "--backoff-base", "0.5",
                   "--price-in", "1.5", "--price-out", "3"])
    client = client_from_args(args)
    cfg = client.config
    assert (cfg.base_url, cfg.model, cfg.api_key, cfg.max_concurrency, cfg.timeout_s, cfg.max_retries,
            cfg.backoff_base_s) == ("http://127.0.0.1:9/v1", "m-1", "sk-test-123", 2, 5.0, 1, 0.5)
    assert (cfg.prices["m-1"].input_per_m, cfg.prices["m-1"].output_per_m) == (1.5, 3.0)
    assert "sk-test-123" not in repr(cfg) and "sk-test-123" not in str(cfg.to_dict())
