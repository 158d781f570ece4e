"""Grade parsing: a grade is read right or flagged unparseable — never a wrong number.

Hypothesis renders known grades in the many layouts a real LLM uses (label spellings, scales
stated in brackets, separators, value forms, list / line / table layouts, prose around and
between the fields) and checks the parse equals the grades rendered; corrupted replies (N/A,
negative, other scales, ranges, conflicting repeats, ambiguous labels and ages) must raise.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinyinterp.evaluation.grade_parsing import AGE_RANGES, Grades, parse_grades
from tinyinterp.llm import InvalidReply

WORDS = "zero one two three four five six seven eight nine ten".split()

LABELS = {
    "grammar": ["Grammar", "grammar", "GRAMMAR", "**Grammar**", "Grammar score", "Grammar (0-10)",
                "Grammar (out of 10)", "Grammar [1-10]", "Grammar rating"],
    "creativity": ["Creativity", "creativity", "**Creativity**", "Creativity (0-10)", "Creativity score"],
    "consistency": ["Consistency", "Consistency with the story's beginning", "Consistency with the instructions",
                    "**Consistency**", "Consistency (out of 10)"],
    "plot": ["Plot", "Whether the plot makes sense", "Plot (0-10)", "**Plot**"],
    "age_group": ["Age group", "Age", "age group", "**Age group**", "Estimated age group", "Age group (A-F)"],
}
SEPARATORS = [": ", ":", " - ", " = ", ": **", ":\n", " – "]
JOINERS = [", ", "\n", "; ", "\n- ", "\n\n", ". "]
PROSE = ["Here are my grades.", "The plot makes sense, and the grammar has 2 small errors.",
         "Creativity is lacking in 1 place.", "I would say the age of the student might be about 7.",
         "Consistency is good overall.", "There are 10 sentences in the story.",
         "The student completed the sentence split by the separator."]
COMMENTS = ["", " (good)", " - the grammar has 2 small errors", " (a few errors)", " because the plot is clear"]


def _age_text(group: str, form: int) -> str:
    lo, hi = AGE_RANGES[group]
    span = f"{lo}-{hi}" if group != "A" else "3 or under"
    return [group, f"{group} ({span})", f"{group}: {span}", f"{span} ({group})", f"a {span} year old ({group})",
            f"{group} ({lo}–{hi} years)" if group != "A" else f"{group} (3 or under)", f"Group {group}",
            f"{group}."][form]


@st.composite
def replies(draw, corrupt: bool = False):
    """(reply text, expected Grades) for random grades in a random layout."""
    half = st.integers(0, 20).map(lambda x: x / 2)
    truth = {s: draw(half) for s in ("grammar", "creativity", "consistency")}
    truth["plot"] = draw(st.none() | half)
    truth["age_group"] = draw(st.none() | st.sampled_from("ABCDEF"))
    fields = [f for f in truth if truth[f] is not None]
    fields = draw(st.permutations(fields))
    numbered = draw(st.booleans())
    joiner = draw(st.sampled_from(JOINERS))
    parts = []
    for i, field in enumerate(fields):
        label = draw(st.sampled_from(LABELS[field]))
        sep = draw(st.sampled_from(SEPARATORS))
        v = truth[field]
        if field == "age_group":
            value = _age_text(v, draw(st.integers(0, 7)))
        else:
            shown = f"{v:g}"
            forms = [f"{shown}/10", f"{shown} / 10", f"{shown} out of 10", f"**{shown}/10**"]
            if not sep.endswith("\n"):  # "Grammar:\n8. Creativity: …" reads as a numbered list: flagged, by design
                forms.append(shown)
            if v == int(v):
                forms.append(f"{WORDS[int(v)]} out of ten")
            else:  # fractions as graders write them: 7½/10, 7 1/2 out of 10
                whole = f"{int(v)}" if v > 1 else ""
                forms += [f"{whole}½/10", f"{int(v)} 1/2 out of 10" if v > 1 else "½ out of 10", f"{whole}½"]
            value = draw(st.sampled_from(forms)) + draw(st.sampled_from(COMMENTS))
        line = f"{label}{sep}{value}"
        if numbered:
            line = f"{i + 1}. {line}"
        if draw(st.booleans()) and joiner in ("\n", "\n\n", "\n- "):
            line = draw(st.sampled_from(PROSE)) + "\n" + line  # prose between the fields
        parts.append(line)
    text = joiner.join(parts)
    if draw(st.booleans()):
        text = draw(st.sampled_from(PROSE)) + "\n\n" + text
    if draw(st.booleans()):
        text += "\n\n" + draw(st.sampled_from(PROSE))
    return text, Grades(**truth)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(replies())
def test_every_layout_is_read_exactly(case):
    text, expected = case
    assert parse_grades(text) == expected


# A corruption turns one field's value into something that states no single valid grade.
SCORE_CORRUPTIONS = ["N/A", "n/a", "-{v}/10", "{big}/10", "{v}/5", "{a}-{b}/10", "{a} or {b}", "{v},5/10", "{pct}%",
                     "unknown", "see above", "{v}/100"]
AGE_CORRUPTIONS = ["B or C", "C (10-12)", "5-7", "17", "unknown", "E (6-7)"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(replies(), st.data())
def test_corrupted_values_are_flagged_not_misread(case, data):
    text, expected = case
    field = data.draw(st.sampled_from(["grammar", "creativity", "consistency", "age_group"]))
    # Rebuild the reply with that field corrupted: simplest is a fresh canonical line that replaces it.
    good = {k: v for k, v in expected.to_dict().items() if v is not None and k != field}
    lines = [f"{k.replace('_', ' ').capitalize()}: {v:g}/10" if k != "age_group" else f"Age group: {v}"
             for k, v in good.items()]
    if field == "age_group":
        bad = data.draw(st.sampled_from(AGE_CORRUPTIONS))
        lines.insert(data.draw(st.integers(0, len(lines))), f"Age group: {bad}")
    else:
        v = data.draw(st.integers(1, 5))
        bad = data.draw(st.sampled_from(SCORE_CORRUPTIONS)).format(v=v, big=10 + v, a=v, b=v + 1, pct=10 * v + 20)
        lines.insert(data.draw(st.integers(0, len(lines))), f"{field.capitalize()}: {bad}")
    reply = data.draw(st.sampled_from(JOINERS)).join(lines)
    with pytest.raises(InvalidReply):
        parse_grades(reply)


@settings(max_examples=200, deadline=None)
@given(replies(), st.data())
def test_a_field_repeated_with_another_value_is_flagged(case, data):
    text, expected = case
    field = data.draw(st.sampled_from(["grammar", "creativity", "consistency"]))
    other = data.draw(st.integers(0, 10).filter(lambda x: x != getattr(expected, field)))
    with pytest.raises(InvalidReply, match="several"):
        parse_grades(text + f"\n\nFinal grades: {field.capitalize()}: {other:g}/10")
    # Repeating the same value is consistent and still reads right.
    assert parse_grades(text + f"\n\n{field.capitalize()}: {getattr(expected, field):g}/10") == expected


@settings(max_examples=200, deadline=None)
@given(replies(), st.sampled_from(["grammar", "creativity", "consistency"]))
def test_a_missing_required_grade_is_flagged(case, field):
    text, expected = case
    lines = [f"{k}: {v}" for k, v in expected.to_dict().items() if v is not None and k != field]
    with pytest.raises(InvalidReply):
        parse_grades(", ".join(lines))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("Grammar Creativity Consistency Plot Age group :/-,.\n0123456789ABCDEF"
                                              "(out of 10) N/A")), max_size=120))
def test_arbitrary_text_never_gives_an_out_of_range_grade(text):
    try:
        g = parse_grades(text)
    except InvalidReply:
        return
    for s in ("grammar", "creativity", "consistency"):
        assert 0 <= getattr(g, s) <= 10
    assert g.plot is None or 0 <= g.plot <= 10
    assert g.age_group in (None, *"ABCDEF")


# The failing examples of issue 10 (each was stored as a wrong grade with status ok).
@pytest.mark.parametrize("reply, expected", [
    ("Grammar (0-10): 3, Creativity (0-10): 6, Consistency (0-10): 7", Grades(3, 6, 7, None, None)),
    ("Grammar (out of 10): 8, Creativity (out of 10): 6, Consistency (out of 10): 5", Grades(8, 6, 5, None, None)),
    ("Grammar: eight out of ten, Creativity: 6/10, Consistency: 5/10", Grades(8, 6, 5, None, None)),
    ("The plot makes sense. Grammar: 8/10, Creativity: 6/10, Consistency: 5/10", Grades(8, 6, 5, None, None)),
    ("Grammar: 8/10, Creativity: 6/10, Consistency: 5/10, Age group: a 6-7 year old (C)", Grades(8, 6, 5, None, "C")),
    ("| Criterion | Score |\n|---|---|\n| Grammar | 8/10 |\n| Creativity | 7/10 |\n| Consistency | 9/10 |\n"
     "| Plot | 6/10 |\n| Age group | D (8-9) |", Grades(8, 7, 9, 6, "D")),
    ('{"grammar": "8/10", "creativity": 7, "consistency": 6.5, "plot": null, "age_group": "C (6-7)"}',
     Grades(8, 7, 6.5, None, "C")),
])
def test_issue_examples_are_read_right(reply, expected):
    assert parse_grades(reply) == expected


@pytest.mark.parametrize("reply", [
    "Grammar: 8/10, Creativity: N/A, Consistency: 7/10",
    "Grammar: -3/10, Creativity: 5/10, Consistency: 5/10",
    "Grammar (out of 5): 4, Creativity (out of 5): 3, Consistency (out of 5): 5",
    "Grammar: 7-8/10, Creativity: 7/10, Consistency: 7/10",
    "Grammar and creativity: 8/10, Consistency: 7/10",
    "Grammar: 8/10, Creativity: 7/10, Consistency: 7/10, Age group: B or C",
    '{"grammar": true, "creativity": 7, "consistency": 6}',
    '{"grammar": 8, "creativity": "N/A", "consistency": 6}',
])
def test_issue_examples_that_state_no_valid_grade_are_flagged(reply):
    with pytest.raises(InvalidReply):
        parse_grades(reply)


def _transcript_lines(shared_data) -> list[str]:
    text = (shared_data / "eval-prompts" / "gpt4_grading_prompt_excerpt.md").read_text(encoding="utf-8")
    return text.split("---\n", 1)[1].split("\n")


def test_the_papers_grading_transcripts(shared_data):
    """GPT-4's replies in the paper: its grade lines alone and after its own assessment paragraph."""
    lines = _transcript_lines(shared_data)
    grade_lines = [i for i, line in enumerate(lines) if line.startswith("Grammar:")]
    expected = [Grades(8, 7, 7, None, "E"), Grades(10, 6, 10, 8, "C")]
    assert len(grade_lines) == 2
    for i, want in zip(grade_lines, expected):
        assert parse_grades(lines[i]) == want
        # The assessment GPT-4 wrote before (it mentions grammar, consistency, creativity and the plot
        # in prose) must not change what is read.
        assessment = next(line for line in reversed(lines[:i]) if line.startswith("The st"))
        assert len(assessment) > 300
        assert parse_grades(assessment + "\n\n" + lines[i]) == want


@pytest.mark.parametrize("reply, expected", [
    ("I would rate the grammar 7/10, creativity 6/10, consistency 8/10 and plot 7/10. Age group: C.",
     Grades(7, 6, 8, 7, "C")),
    ("Grammar: 9/10\nCreativity: 5/10\nConsistency: 8/10\nAge group: D. The sentences are like a child of 8 or 9.",
     Grades(9, 5, 8, None, "D")),
    ("Age: The student is probably around 7 years old (C).\nGrammar: 6\nCreativity: 4\nConsistency: 5",
     Grades(6, 4, 5, None, "C")),
    ('{"grades": {"grammar": 8, "creativity": 7, "consistency": 9, "plot": 7, "age_group": "E"}}',
     Grades(8, 7, 9, 7, "E")),
    ("Scores summary below.\nGrammar: 8/10 (80%)\nCreativity: 6/10\nConsistency: 7/10\nPlot: 7/10\nAge group: F: 13-16",
     Grades(8, 6, 7, 7, "F")),
])
def test_more_layouts_are_read_right(reply, expected):
    assert parse_grades(reply) == expected


@pytest.mark.parametrize("reply", [
    "Grammar: 8/10, Creativity: 7/10, Consistency: 9/10\nPlot:\nOverall: 7/10",   # plot's line is another label
    "Grades (out of 5):\nGrammar: 4\nCreativity: 3\nConsistency: 5",            # scale stated once, for all
    "On a scale of 1 to 5: Grammar: 4, Creativity: 3, Consistency: 5",
    "Grammar: A, Creativity: B, Consistency: A",
    "Consistency with the story's beginning and whether the plot makes sense: 7/10, Grammar: 8, Creativity: 6",
])
def test_more_layouts_that_state_no_sure_grade_are_flagged(reply):
    with pytest.raises(InvalidReply):
        parse_grades(reply)


# Issue 18: fractions, declared scales, tables with a Max column, self-corrections.
@pytest.mark.parametrize("reply, expected", [
    ("Grammar: 7½/10, Creativity: 6/10, Consistency: 8/10", Grades(7.5, 6, 8, None, None)),
    ("Grammar: 7 1/2 out of 10, Creativity: 6 out of 10, Consistency: 8 out of 10", Grades(7.5, 6, 8, None, None)),
    ("| Criterion | Score | Max |\n|---|---|---|\n| Grammar | 8 | 10 |\n| Creativity | 7 | 10 |\n| Consistency | 9 | 10 |",
     Grades(8, 7, 9, None, None)),
    ("| Criterion | Score (out of 10) |\n|---|---|\n| Grammar | 8 |\n| Creativity | 7 |\n| Consistency | 9 |",
     Grades(8, 7, 9, None, None)),
    ("Scores (0-10 scale):\nGrammar: 8\nCreativity: 7\nConsistency: 6", Grades(8, 7, 6, None, None)),
])
def test_fractions_and_ten_point_declarations_are_read_right(reply, expected):
    assert parse_grades(reply) == expected


@pytest.mark.parametrize("reply", [
    "Scores (1-5 scale):\nGrammar: 4\nCreativity: 3\nConsistency: 5",
    "Scores (0-1): Grammar: 0.8, Creativity: 0.7, Consistency: 0.9",
    "| Criterion | Score | Max |\n|---|---|---|\n| Grammar | 4 | 5 |\n| Creativity | 3 | 5 |\n| Consistency | 5 | 5 |",
    "| Grammar | 4 | 5 |\n| Creativity | 3 | 5 |\n| Consistency | 5 | 5 |",
    "Grammar: 9/10, no wait, 8/10. Creativity: 7/10, Consistency: 7/10",
    "Grammar: 9/10, Creativity: 7/10, Consistency: 7/10. Actually, grammar should be 8.",
    "Grammar: ~~9~~ 8/10, Creativity: 7/10, Consistency: 7/10",
    "Grammar: 9/10 -> 8/10, Creativity: 7/10, Consistency: 7/10",
    "Grammar: 7 5/10, Creativity: 7/10, Consistency: 7/10",
])
def test_other_scales_and_revisions_are_flagged(reply):
    with pytest.raises(InvalidReply):
        parse_grades(reply)


def _canonical_lines(grades: Grades) -> list[str]:
    return [f"{k.replace('_', ' ').capitalize()}: {v:g}/10" if k != "age_group" else f"Age group: {v}"
            for k, v in grades.to_dict().items() if v is not None]


DECLARATIONS = ["Scores ({lo}-{hi} scale):", "Scores ({lo}-{hi}):", "Each is rated on a {lo}-{hi} scale.",
                "Scale: {lo}-{hi}", "Grades ({lo} to {hi}):", "Scoring: {lo}–{hi}", "My ratings [{lo}-{hi}]:"]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(DECLARATIONS), st.sampled_from([1, 3, 4, 5, 7, 20, 100]), st.integers(0, 1), st.data())
def test_a_declared_scale_other_than_ten_is_flagged(declaration, hi, lo, data):
    grades = {f: data.draw(st.integers(lo, min(hi, 10))) for f in ("grammar", "creativity", "consistency")}
    lines = [f"{f.capitalize()}: {v}" for f, v in grades.items()]
    reply = declaration.format(lo=lo, hi=hi) + data.draw(st.sampled_from(["\n", " ", "\n\n"])) + \
        data.draw(st.sampled_from(JOINERS)).join(lines)
    with pytest.raises(InvalidReply, match="scale"):
        parse_grades(reply)
    # The same declaration with a 10 reads the numbers as they are.
    ten = declaration.format(lo=lo, hi=10) + "\n" + "\n".join(lines)
    assert parse_grades(ten) == Grades(grades["grammar"], grades["creativity"], grades["consistency"], None, None)


@settings(max_examples=200, deadline=None)
@given(replies(), st.sampled_from(["Max", "Out of", "Maximum", "Possible", "Max score"]),
       st.sampled_from([5, 10, 20, 100]), st.booleans())
def test_a_table_with_a_max_column_is_read_only_out_of_ten(case, max_header, top, with_header):
    _, expected = case
    scores = {k: v for k, v in expected.to_dict().items() if k != "age_group" and v is not None}
    rows = [f"| {k.capitalize()} | {v:g} | {top} |" for k, v in scores.items()]
    head = [f"| Criterion | Score | {max_header} |", "|---|---|---|"] if with_header else []
    reply = "\n".join(head + rows)
    if top == 10 and with_header:
        assert parse_grades(reply) == Grades(**{**expected.to_dict(), "age_group": None})
    else:  # another maximum, or two bare numbers without a header saying which is the score
        with pytest.raises(InvalidReply):
            parse_grades(reply)


REVISIONS = [", no wait, {o}/10", " (actually {o}/10)", ". Sorry, {f} should be {o}/10", ", make that {o}/10",
             " - correction: {o}/10", " ~~{o}/10~~", ". On second thought, {o}.", " -> {o}/10", ", wait, {o}"]


@settings(max_examples=300, deadline=None)
@given(replies(), st.sampled_from(REVISIONS), st.data())
def test_a_reply_that_revises_a_grade_is_flagged(case, revision, data):
    _, expected = case
    lines = _canonical_lines(expected)
    field = data.draw(st.sampled_from(["grammar", "creativity", "consistency"]))
    i = next(i for i, line in enumerate(lines) if line.lower().startswith(field))
    other = data.draw(st.integers(0, 10).filter(lambda x: x != getattr(expected, field)))
    lines[i] += revision.format(o=other, f=field)
    with pytest.raises(InvalidReply):
        parse_grades(data.draw(st.sampled_from(["\n", "; ", "\n\n"])).join(lines))
