"""The tinyinterp console script: every sub-command has --help; generate and info work; errors are one line."""

import json

import pytest

from tinyinterp.cli import build_parser, main


def _subcommands(parser):
    for action in parser._subparsers._group_actions:
        yield from action.choices.items()


def test_every_subcommand_has_help(capsys):
    names = []
    for name, sub in _subcommands(build_parser()):
        names.append(name)
        with pytest.raises(SystemExit) as exit_:
            main([name, "--help"])
        assert exit_.value.code == 0
        assert "usage: tinyinterp" in capsys.readouterr().out
        if sub._subparsers is not None:
            for child, _ in _subcommands(sub):
                with pytest.raises(SystemExit):
                    main([name, child, "--help"])
                assert f"{name} {child}" in capsys.readouterr().out
    assert {"train", "generate", "info", "analyze", "eval", "datagen", "app"} <= set(names)


def test_info_lists_presets_and_describes_a_run(capsys, tiny_run):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "tinystories-1m" in out and "roneneldan/TinyStories-33M" in out
    assert main(["info", "tinystories-3m"]) == 0
    assert "d_model: 128" in capsys.readouterr().out
    assert main(["info", str(tiny_run)]) == 0
    assert "preset: test-tiny" in capsys.readouterr().out


def test_generate_prints_json_lines(capsys, tiny_run):
    code = main(["generate", str(tiny_run), "Once upon a time", "Lily saw", "-n", "2",
                 "--max-new-tokens", "5", "--json", "--seed", "1"])
    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["prompt"] for r in lines] == ["Once upon a time"] * 2 + ["Lily saw"] * 2
    assert all(isinstance(r["completion"], str) for r in lines)


def test_errors_are_one_line_with_exit_code_2(capsys, tmp_path):
    assert main(["generate", str(tmp_path / "missing-run"), "hi"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "missing-run" in err


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_generate_refuses_a_non_finite_temperature_in_one_line(capsys, tiny_run, value):
    assert main(["generate", str(tiny_run), "hi", f"--temperature={value}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --temperature must be a finite number") and "\n" not in err


def test_analyze_with_an_empty_corpus_leaves_nothing_in_the_run_dir(capsys, tiny_run, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    before = sorted(p.relative_to(tiny_run) for p in tiny_run.rglob("*"))
    assert main(["analyze", "heads", str(tiny_run), "--corpus", str(empty), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the tokenizing bar
    assert err.startswith("error: ") and "empty" in err
    assert sorted(p.relative_to(tiny_run) for p in tiny_run.rglob("*")) == before  # no empty tokens.bin, no folders


ALL_COMMANDS = ("train", "sweep", "generate", "info", "analyze", "eval", "export", "datagen", "explain",
                "explain-compare", "app")

_HELP_PROBE = """
import runpy, sys
sys.argv = ["tinyinterp", "--help"]
try:
    runpy.run_module("tinyinterp.cli", run_name="__main__")
except SystemExit as e:
    assert e.code == 0, e.code
print("HEAVY:", sorted(m for m in ("torch", "openai", "transformers", "streamlit") if m in sys.modules))
"""


def test_help_lists_every_command_without_importing_torch():
    """`tinyinterp --help` / `python -m tinyinterp.cli --help`: entry-point commands, listed without heavy imports."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    out = subprocess.run([sys.executable, "-c", _HELP_PROBE], cwd=root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "HEAVY: []" in out.stdout
    listed = {line.split()[0] for line in out.stdout.splitlines() if line.startswith("    ")}
    assert set(ALL_COMMANDS) <= listed


def test_only_the_command_that_runs_builds_its_parser():
    parser = build_parser(["-v", "info", "tinystories-1m"])
    parsers = dict(_subcommands(parser))
    assert set(ALL_COMMANDS) <= set(parsers)
    assert parsers["info"]._actions and any(a.dest == "target" for a in parsers["info"]._actions)
    assert not any(a.option_strings for a in parsers["train"]._actions)  # a help-line stub: no options yet
    assert {name for name, _ in _subcommands(build_parser())} >= set(ALL_COMMANDS)
