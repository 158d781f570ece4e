"""`tinyinterp analyze find RUN WORD…`: the library's word search from the command line."""

from __future__ import annotations

import pytest

from tests.support.story_world import make_model
from tinyinterp.runs import rundir
from tinyinterp.interp.cli import main as analyze


@pytest.fixture
def indexed_run(story_tokenizer, story_corpus, tmp_path):
    run = rundir.save_run(tmp_path / "run", make_model(story_tokenizer), story_tokenizer)
    assert analyze(["neurons", str(run), "--corpus", str(story_corpus.path), "--k", "5", "--no-progress"]) == 0
    return run


def test_find_lists_neurons_for_a_word(indexed_run, capsys):
    capsys.readouterr()
    assert analyze(["find", str(indexed_run), "Lucy", "--top", "5"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "occurrences" in out[0] and "Lucy" in out[0]
    header = out[1].split()
    assert header[:3] == ["layer", "neuron", "score"] and len(out) == 2 + 5


def test_find_errors_are_one_line(indexed_run, tmp_path, capsys):
    assert analyze(["find", str(tmp_path), "dog"]) == 2
    assert "no neuron index" in capsys.readouterr().err
    assert analyze(["find", str(indexed_run), "xylophone"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no whole-word occurrence" in err[0]
