"""Prompt builders against exact strings, and reply parsers (offline, no model)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyinterp.explain.prompts import (
    EXPLANATION_PREFIX, explain_messages, format_records, parse_explanation, parse_json_activations,
    simulate_json_messages, simulate_messages,
)
from tinyinterp.explain.records import normalize
from tinyinterp.llm import InvalidReply


def test_format_records_exact():
    text = format_records([([" Lily", " ran", "\n"], [10, 0, 3]), (["Tom"], [7])])
    assert text == "\n<start>\n Lily\t10\n ran\t0\n↵\t3\n<end>\n<start>\nTom\t7\n<end>\n"
    assert format_records([([" a", " b"], [0, 4])], omit_zeros=True) == "\n<start>\n b\t4\n<end>\n"
    assert format_records([([" a"], [4])], hide=True) == "\n<start>\n a\tunknown\n<end>\n"


def test_explain_prompt_ends_with_the_neuron_and_prefix():
    msgs = explain_messages([([" Lily", " ran", " to", " the", " park", "."], [4.0, 0.0, 0.0, 0.0, 0.0, 0.0])], 4.0)
    assert msgs[0]["role"] == "system" and "token<tab>activation" in msgs[0]["content"]
    assert [m["role"] for m in msgs[1:]] == ["user", "assistant", "user", "assistant", "user"]
    assert msgs[2]["content"] == " names of the children in the story."
    assert msgs[-1]["content"] == (
        "\n\nNeuron 3\nActivations:\n<start>\n Lily\t10\n ran\t0\n to\t0\n the\t0\n park\t0\n.\t0\n<end>\n"
        "\nSame activations, but with all zeros filtered out:\n<start>\n Lily\t10\n<end>\n"
        f"\nExplanation of neuron 3 behavior: {EXPLANATION_PREFIX}")


def test_simulation_prompts_hide_activations_and_count_tokens():
    msgs = simulate_messages("names", [" Lily", " ran"])
    assert msgs[-1]["content"].endswith("find names\nActivations:\n<start>\n Lily\tunknown\n ran\tunknown\n<end>\n")
    assert msgs[-2]["role"] == "assistant" and msgs[-2]["content"].startswith("<start>\n")
    jmsgs = simulate_json_messages("names", [" Lily", " ran"])
    assert jmsgs[-1]["content"] == f'Explanation: {EXPLANATION_PREFIX} names\nTokens (2): [" Lily", " ran"]'


@pytest.mark.parametrize("reply, expected", [
    (" names of children.", "names of children"),
    ("the main thing this neuron does is find the word \"ball\".\nMore text", 'the word "ball"'),
    ('"verbs in the past tense"', "verbs in the past tense"),
])
def test_parse_explanation(reply, expected):
    assert parse_explanation(reply) == expected


@pytest.mark.parametrize("reply", ["", "   ", ".", "I'm sorry, but I can't help with that.", "As an AI, I cannot say"])
def test_parse_explanation_rejects_empty_and_refusals(reply):
    with pytest.raises(InvalidReply):
        parse_explanation(reply)


def test_parse_json_activations_validates_length_and_range():
    assert parse_json_activations({"activations": [0, 10, 2.5]}, 3) == [0.0, 10.0, 2.5]
    for bad in ({"activations": [0, 1]}, {"activations": [0, 11, 0]}, {"activations": [0, "x", 1]},
                {"activations": [0, True, 1]}, {"nope": []}, [1, 2]):
        with pytest.raises(InvalidReply):
            parse_json_activations(bad, 3)


@given(st.lists(st.floats(-5, 50, allow_nan=False), min_size=1, max_size=30), st.floats(0.01, 40))
def test_normalize_is_0_to_10_and_monotone(acts, max_act):
    out = normalize(acts, max_act)
    assert all(0 <= v <= 10 and isinstance(v, int) for v in out)
    pairs = sorted(zip(acts, out))
    assert all(a[1] <= b[1] for a, b in zip(pairs, pairs[1:]))
    assert normalize([max_act], max_act) == [10]
    assert normalize(acts, 0.0) == [0] * len(acts)
