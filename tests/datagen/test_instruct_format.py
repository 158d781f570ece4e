"""One Instruct format for datagen, training text and evaluation (tinyinterp.data.instruct_format), round-tripped."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datagen.instruct import instruct_record, make_ood_split
from tinyinterp.errors import DataError
from tinyinterp.evaluation.completions import record_prompt
from tinyinterp.evaluation.grade_prompts import instruct_turns
from tinyinterp.evaluation.prompts import load_prompts
from tinyinterp.data.instruct_format import (
    LINE_KINDS, InstructFields, parse_text, render_prompt, render_text,
)

STORY = {"id": "s1", "story": "Tom had a red ball. He threw it up high! \"Look,\" said Mom. The ball fell in the pond.",
         "words": {"verb": "throw", "noun": "ball", "adjective": "red"}, "features": ["Dialogue", "BadEnding"]}

_word = st.text(alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyz -'"), min_size=1, max_size=12).filter(
    lambda w: w.strip() == w and w)
_line = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r\x0b\x0c\x1c\x1d\x1e"
                                        "\x85\u2028\u2029"), min_size=1, max_size=60).filter(lambda s: s.strip())


@st.composite
def instruct_cases(draw):
    fields = InstructFields(features=tuple(draw(st.lists(st.sampled_from(["Dialogue", "BadEnding", "Twist"]),
                                                           unique=True, max_size=3))),
                            words=tuple(draw(st.lists(_word, max_size=3))),
                            summary=draw(st.none() | _line), random_sentence=draw(st.none() | _line))
    available = fields.available()
    if not available:
        fields = InstructFields(words=("dog",))
        available = ["Words"]
    lines = draw(st.permutations(available))[: draw(st.integers(1, len(available)))]
    story = draw(st.text(min_size=1, max_size=200).filter(lambda s: s.strip()))
    return fields, list(lines), story


@settings(max_examples=300, deadline=None)
@given(instruct_cases())
def test_render_then_parse_round_trips(case):
    fields, lines, story = case
    text = render_text(fields, lines, story)
    prompt = render_prompt(fields, lines)
    parsed = parse_text(text)
    shown = InstructFields(**{name: getattr(fields, name) if kind in lines else None
                              for name, kind in (("features", "Features"), ("words", "Words"),
                                                 ("summary", "Summary"), ("random_sentence", "Random sentence"))})
    assert (parsed.fields, list(parsed.lines), parsed.story) == (shown, lines, story.strip())
    assert parse_text(prompt) == type(parsed)(shown, tuple(lines), None)
    assert text == prompt + " " + story.strip() and prompt.endswith("\nStory:")


def test_datagen_records_load_as_evaluation_prompts_with_the_same_text(tmp_path):
    """datagen → training text → evaluation prompt → grading turn: one format end to end."""
    records = [instruct_record(dict(STORY, id=f"s{i}"), "Tom lost his red ball in the pond.", seed=0)
               for i in range(40)]
    _, ood_test = make_ood_split(records, seed=0, test_fraction=0.25)
    prompts = []
    for name, recs in (("instruct.jsonl", records), ("ood_test.jsonl", ood_test)):
        path = tmp_path / name
        path.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
        prompts += load_prompts(path)
    assert len(prompts) == 50 and len(ood_test) == 10
    for rec, prompt in zip(records + ood_test, prompts):
        assert prompt.kind == "instruct" and prompt.text == rec["prompt"]  # the model sees what training showed
        assert rec["text"] == prompt.text + " " + rec["story"]
        assert parse_text(rec["text"]).story == rec["story"]
        turn1, _ = instruct_turns(rec["story"], prompt.words, prompt.sentence, prompt.summary)
        if "Words" in rec["lines"]:
            assert "The story should contain the words: throw, ball, red." in turn1
        if "Random sentence" in rec["lines"]:
            assert f"the following sentence: {rec['random_sentence']}." in turn1
        # a completion record made from this prompt grades with the same requirements
        again = record_prompt({"prompt": prompt.text, "prompt_id": prompt.id, "kind": "instruct",
                               "prompt_meta": {k: v for k, v in prompt.to_dict().items() if k not in ("text", "id", "kind")}})
        assert again == prompt


def test_evaluation_prompts_from_fields_use_the_training_format(tmp_path):
    path = tmp_path / "p.yaml"
    items = [{"id": f"q{i}", "kind": "instruct", "words": ["dance", "moon", "sleepy"], "sentence": "The moon was big.",
              "summary": "A dog dances.", "features": ["Dialogue"]} for i in range(30)]
    path.write_text(json.dumps(items), encoding="utf-8")  # JSON is YAML
    prompts = load_prompts(path)
    orders = set()
    for p in prompts:
        parsed = parse_text(p.text)
        assert "Random sentence: The moon was big.\n" in p.text
        assert not any(line.startswith("Sentence:") for line in p.text.split("\n"))
        assert parsed.fields == InstructFields(("Dialogue",), ("dance", "moon", "sleepy"), "A dog dances.",
                                               "The moon was big.")
        assert p.text.endswith("Story:") and set(parsed.lines) == set(LINE_KINDS)
        orders.add(parsed.lines)
    assert len(orders) > 5  # orders vary with the id, as in training …
    assert [p.text for p in load_prompts(path)] == [p.text for p in prompts]  # … and are deterministic


def test_evaluation_prompt_tokens_are_a_prefix_of_the_training_text_tokens(tmp_path):
    """No trailing space after "Story:": the model starts from the token boundary it saw in training."""
    from tinyinterp.data.tokenizer import Tokenizer

    rec = instruct_record(STORY, "Tom lost his red ball in the pond.", seed=3,
                          lines=["Summary", "Random sentence", "Words"])
    item = {"id": "x", "kind": "instruct", "words": ["throw", "ball", "red"], "summary": rec["summary"],
            "sentence": rec["random_sentence"], "lines": rec["lines"]}
    path = tmp_path / "p.yaml"
    path.write_text(json.dumps([item]), encoding="utf-8")
    (prompt,) = load_prompts(path)
    assert rec["text"].startswith(prompt.text)
    tok = Tokenizer.train_bpe([rec["text"]] * 20 + [STORY["story"]] * 20, vocab_size=300, progress=False)
    prompt_ids, text_ids = tok.encode(prompt.text), tok.encode(rec["text"])
    assert text_ids[: len(prompt_ids)] == prompt_ids


@pytest.mark.parametrize("text", ["Sentence: The moon.\nStory: x", "Words: a\nWords: b\nStory:", "Story:x",
                                  "Summary A dog.\nStory: x"])
def test_texts_in_other_formats_are_refused_in_one_line(text):
    with pytest.raises(DataError) as err:
        parse_text(text)
    assert "\n" not in str(err.value)
