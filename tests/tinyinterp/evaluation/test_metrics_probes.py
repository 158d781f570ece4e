"""No-LLM metrics, probe scoring on fixed completions, and the rouge/probes/demo steps on a tiny run."""

from __future__ import annotations

import pytest

from tinyinterp.errors import DataError
from tinyinterp.evaluation.metrics import finishes_cut_sentence, required_words_share, set_stats, text_stats
from tinyinterp.evaluation.probes import CATEGORIES, Probe, load_probes, score_answer, score_completions


def test_required_words_share_counts_inflections():
    story = "The cats were performing on a cold night. They decorated the stopped bus with berries."
    assert required_words_share(story, ["perform", "cat", "decorate", "stop", "berry"]) == 1.0
    assert required_words_share(story, ["perform", "moon", "sing", "cold"]) == 0.5
    assert required_words_share(story, []) is None


@pytest.mark.parametrize("prompt, completion, expected", [
    ("There was a loud", " thunderclap and a bright flash. Lily was scared.", True),
    ("There was a loud", " bang!", True),
    ("There was a loud", " Once upon a time there was a cat.", False),       # restarts a new sentence
    ("Lily went to see", " Lily's mom. They played.", True),                   # a name from the prompt is fine
    ("There was a loud", "", False),
    ("There was a loud", " and and and and and and", False),                   # never ends
    ("There was a loud noise.", " Then it rained.", None),                     # prompt not cut
])
def test_finishes_cut_sentence(prompt, completion, expected):
    assert finishes_cut_sentence(prompt, completion) is expected


def test_text_and_set_stats():
    s = text_stats("Tom ran. Tom ran fast!")
    assert (s.n_words, s.n_sentences, s.n_distinct_words) == (5, 2, 3)
    records = [{"prompt_id": "a", "prompt": "It was a", "completion": " big day. Yes.", "kind": "completion"},
               {"prompt_id": "b", "prompt": "Words: cat\nStory: ", "completion": "A cat sat.", "kind": "instruct",
                "prompt_meta": {"words": ["cat", "dog"]}}]
    out = set_stats(records)
    assert out["finishes_cut_sentence_rate"] == 1.0 and out["required_words_share"] == 0.5
    assert out["vocabulary_size"] == 6 and out["n_completions"] == 2


def test_probe_set_is_well_formed():
    probes = load_probes()
    assert 28 <= len(probes) <= 40 and len({p.id for p in probes}) == len(probes)
    assert {p.category for p in probes} == set(CATEGORIES)


def test_probe_scoring_on_fixed_completions():
    cat = Probe("r", "reasoning", "Lily wanted a cat or a dog. Her mom said no to the dog, so she got a",
                accept=["cat", "kitten"], reject=["dog"])
    assert score_answer(cat, " cat. She was happy.")
    assert score_answer(cat, " little kitten")
    assert not score_answer(cat, " dog and a cat")         # the rejected answer comes first
    assert not score_answer(cat, " big red ball and then later a cat")  # outside the first 6 words
    ice = Probe("c", "reasoning", "...", accept=["ice cream"])
    assert score_answer(ice, " ice cream is better") and not score_answer(ice, " cream ice")
    fix = Probe("f", "reasoning", "...", accept=["fix"])
    assert score_answer(fix, " fixed it")
    result = score_completions([cat, ice, fix], [" cat.", " cake", " fix it"])
    assert result.accuracy == pytest.approx(2 / 3) and result.by_category() == {"reasoning": pytest.approx(2 / 3)}
    with pytest.raises(DataError, match="3 probes but 1"):
        score_completions([cat, ice, fix], [" cat"])


def test_bad_probe_file(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("- {id: x, category: maths, prompt: a, accept: [b]}\n", encoding="utf-8")
    with pytest.raises(DataError, match="category"):
        load_probes(path)


def test_rouge_and_probes_steps_write_outputs(fresh_run, shared_data):
    from tinyinterp.evaluation import pipeline
    from tinyinterp.evaluation.cli import main
    from tinyinterp.evaluation.completions import eval_dir
    from tinyinterp.runs.rundir import read_json

    assert main(["eval", "complete", "--run", str(fresh_run), "--max-prompts", "3", "--n", "2",
                 "--max-new-tokens", "10", "--no-progress"]) == 0
    summary = pipeline.rouge(fresh_run, n=2, max_train_stories=300, half_stories=2)
    out = eval_dir(fresh_run) / "rouge"
    assert (out / "rouge2_final.png").stat().st_size > 1000
    hist = read_json(out / "rouge2_final.json")["series"]
    assert len(hist) == 4 and all(sum(h["counts"]) == h["n"] for h in hist.values())
    assert summary["n_completions"] == 6 and summary["n_training_stories"] == 300
    assert 0 <= summary["training_max_precision_mean"] <= 1
    probes = pipeline.probes(fresh_run)
    assert probes["n_probes"] == len(load_probes()) and 0 <= probes["accuracy"] <= 1
    assert read_json(eval_dir(fresh_run) / "metrics_final.json")["n_completions"] == 6
    assert main(["eval", "rouge", "--run", str(fresh_run), "--k", "12"]) == 2  # bad k → one-line error


def test_eval_demo(fresh_run, shared_data):
    from tinyinterp.evaluation import eval_demo
    from tinyinterp.evaluation.completions import completions_path, eval_dir

    out = eval_demo(fresh_run, n_prompts=2, n=2, max_new_tokens=8)
    assert out["completions"] == 4 and len(completions_path(fresh_run).read_text().splitlines()) == 4
    assert (eval_dir(fresh_run) / "rouge" / "rouge2_final.png").is_file()
    assert (eval_dir(fresh_run) / "probes.json").is_file() and 0 <= out["probe_accuracy"] <= 1
