"""Prompt files and the paper's grading prompts, checked against exact strings."""

from __future__ import annotations

import json

import pytest

from tinyinterp.errors import DataError
from tinyinterp.evaluation.grade_parsing import Grades, parse_grades
from tinyinterp.evaluation.grade_prompts import COMPLETION_TURN2, INSTRUCT_TURN2, completion_turns, instruct_turns
from tinyinterp.evaluation.prompts import load_prompts
from tinyinterp.data.instruct_format import InstructFields, parse_text
from tinyinterp.llm import InvalidReply


def _excerpt_paragraphs(shared_data) -> list[str]:
    text = (shared_data / "eval-prompts" / "gpt4_grading_prompt_excerpt.md").read_text(encoding="utf-8")
    return text.split("---\n", 1)[1].split("\n")


def test_paper_prompts_load(shared_data):
    prompts = load_prompts()
    assert len(prompts) == 44
    assert prompts[0].id == "p00" and prompts[0].kind == "completion"
    assert prompts[0].text.startswith("Once upon a time, there lived a bunny in a field. Her name was Lucy.")
    assert prompts[0].text.endswith("She was so weak she could")
    assert prompts[1].text.endswith("tried to open it, when suddenly")


def test_completion_turns_equal_the_papers_transcript(shared_data):
    lines = _excerpt_paragraphs(shared_data)
    intro, story, question, turn2 = lines[3], lines[5], lines[7], lines[11]
    beginning, completion = story.split("***")
    turn1, second = completion_turns(beginning, completion)
    assert turn1 == intro + "\n\n" + story + "\n\n" + question
    assert second == turn2 == COMPLETION_TURN2


def test_instruct_turns_equal_the_papers_transcript(shared_data):
    lines = _excerpt_paragraphs(shared_data)
    paper_turn1, paper_turn2 = lines[14], lines[18]
    turn1, turn2 = instruct_turns("[. . . ]", ["perform", "cold", "beautiful"], sentence="[. . . ]",
                                  summary="A cat performs [. . . ]")
    assert turn1 == paper_turn1
    # Turn 2 equals the paper's with its two "[...]" placeholders filled in.
    head, tail = paper_turn2.split("groups:[...]. Use the following grade format: [...] ")
    assert tail == "" and INSTRUCT_TURN2.startswith(head + "groups: A: 3 or under. B: 4-5.")
    assert turn2.endswith("Use the following grade format: Grammar: X/10, Creativity: X/10, Consistency: X/10, "
                          "Plot: X/10, Age group: X ")


def test_parse_the_papers_grade_lines(shared_data):
    lines = _excerpt_paragraphs(shared_data)
    assert parse_grades(lines[13]) == Grades(8, 7, 7, None, "E")
    assert parse_grades(lines[20]) == Grades(10, 6, 10, 8, "C")


@pytest.mark.parametrize("reply, expected", [
    ('{"grammar": 7, "creativity": 5, "consistency": 6, "plot": 4, "age_group": "B"}', Grades(7, 5, 6, 4, "B")),
    ('Here you go:\n```json\n{"Grammar": 9, "Creativity": 3, "Consistency": 2, "Plot": 1, "Age group": "A"}\n```',
     Grades(9, 3, 2, 1, "A")),
    ("**Grammar:** 8.5 out of 10\n**Consistency with the beginning:** 6/10\nCreativity - 4\nPlot: 5/10\nAge: B",
     Grades(8.5, 4, 6, 5, "B")),
])
def test_tolerant_parser(reply, expected):
    assert parse_grades(reply) == expected


@pytest.mark.parametrize("reply", ["I cannot grade this story.", "Grammar: 12/10, Creativity: 7/10, Consistency: 7/10",
                                   "Grammar: 8/100, Creativity: 7, Consistency: 7", '{"grammar": 7}', ""])
def test_unparseable_replies_raise_never_zero(reply):
    with pytest.raises(InvalidReply):
        parse_grades(reply)


def test_yaml_and_jsonl_prompt_files(tmp_path):
    y = tmp_path / "p.yaml"
    y.write_text("- Once upon a time\n- id: ood1\n  kind: instruct\n  words: dance, moon, sleepy\n"
                 "  summary: A dog dances.\n", encoding="utf-8")
    a, b = load_prompts(y)
    assert (a.id, a.text, a.kind) == ("p00", "Once upon a time", "completion")
    assert b.words == ["dance", "moon", "sleepy"]
    # datagen's Instruct format (tinyinterp.data.instruct_format): every given line, an order seeded by the id,
    # and no trailing space after "Story:" (training text is "Story: <story>", the space belongs to the story)
    parsed = parse_text(b.text)
    assert b.text.endswith("\nStory:") and parsed.story is None
    assert parsed.fields == InstructFields(words=("dance", "moon", "sleepy"), summary="A dog dances.")
    assert sorted(parsed.lines) == ["Summary", "Words"] and load_prompts(y)[1].text == b.text
    j = tmp_path / "p.jsonl"
    j.write_text(json.dumps("Tom had a ball") + "\n" + json.dumps({"prompt": "Lily said", "id": "x"}) + "\n")
    assert [p.text for p in load_prompts(j)] == ["Tom had a ball", "Lily said"]


@pytest.mark.parametrize("content, message", [
    ("not: [a list", "not valid YAML"), ("{}", "non-empty list"), ("- 3\n", "expected a string"),
    ("- {text: a, colour: red}\n", "unknown keys"), ("- {text: a, id: x}\n- {text: b, id: x}\n", "duplicate"),
])
def test_bad_prompt_files(tmp_path, content, message):
    path = tmp_path / "bad.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        load_prompts(path)
    with pytest.raises(DataError, match="not found"):
        load_prompts(tmp_path / "missing.yaml")
