"""`make demo` end to end on a small copy of the data: train, stories, analyses, evaluation, app check."""

import pytest

from tinyinterp import demo, rundir


@pytest.fixture
def small_data_dir(shared_data, tmp_path, monkeypatch):
    """A TINYINTERP_DATA folder with the first 150 real stories and the real tokenizer files."""
    data = tmp_path / "data"
    (data / "tinystories").mkdir(parents=True)
    text = (shared_data / "tinystories" / "train-v1-hf-head.txt").read_text(encoding="utf-8")
    stories = text.split("<|endoftext|>")[:150]
    (data / "tinystories" / "train-v1-hf-head.txt").write_text("<|endoftext|>".join(stories) + "<|endoftext|>\n")
    (data / "tinystories" / "train-v2-gpt4-head.txt").write_text(stories[0] + "\n<|endoftext|>\n")
    val = (shared_data / "tinystories" / "validation-hf-head.unsegmented.txt").read_text(encoding="utf-8")[:20_000]
    (data / "tinystories" / "validation-hf-head.unsegmented.txt").write_text(val)
    for name in ("tokenizers", "eval-prompts"):
        (data / name).symlink_to(shared_data / name)
    monkeypatch.setenv("TINYINTERP_DATA", str(data))
    return data


@pytest.mark.slow
def test_demo_runs_every_step_and_leaves_a_complete_run(small_data_dir, tmp_path, capsys):
    out = tmp_path / "runs" / "demo"
    assert demo.main(["--out", str(out), "--preset", "test-small", "--minutes", "0.1", "--no-serve"]) == 0
    printed = capsys.readouterr().out
    assert rundir.is_run_dir(out)
    for step in ("1. train", "2. stories", "3. look inside", "4. evaluation", "5. the app"):
        assert step in printed
    assert "Once upon a time" in printed or "One day" in printed  # the paper's prompts were continued
    analysis = out / rundir.ANALYSIS_DIR
    assert (analysis / "neurons" / "purity.json").is_file() and (analysis / "heads" / "heads.json").is_file()
    assert any((out / "snapshots").glob("step_*/model.safetensors")), "the demo keeps log-spaced snapshots"
    assert (analysis / "emergence" / "emergence.png").is_file()
    assert any((analysis / "eval").rglob("*.json")), "evaluation results must land in the run directory"
