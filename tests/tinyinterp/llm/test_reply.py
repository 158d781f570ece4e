"""Reply shapes: every accessor returns the part we need or raises InvalidReply — never another error.

Hypothesis replaces one part of a well-formed chat-completion reply (usage, choices, the message,
its content, logprobs, one logprob item, a token, a logprob value) with arbitrary JSON, the way a
half-compatible server or a proxy answers, and checks the readers and the simulator's parser.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyinterp.explain.simulator import LLMSimulator
from tinyinterp.llm import InvalidReply, LLMClient, LLMConfig, extract_json
from tinyinterp.llm.reply import first_choice, logprob_content, message_content, usage_tokens

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                    max_leaves=8)


def _good(tokens=("Lily", "ran")) -> dict:
    content, items = "<start>\n", []
    for tok in tokens:
        for piece, lp in ((tok, 0.0), ("\t", 0.0)):
            items.append({"token": piece, "logprob": lp, "top_logprobs": [{"token": piece, "logprob": lp}]})
        items.append({"token": "7", "logprob": math.log(0.8),
                      "top_logprobs": [{"token": "7", "logprob": math.log(0.8)}, {"token": "6", "logprob": math.log(0.2)}]})
        items.append({"token": "\n", "logprob": 0.0, "top_logprobs": []})
        content += f"{tok}\t7\n"
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "logprobs": {"content": items}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5}}


PATHS = [("usage",), ("usage", "prompt_tokens"), ("choices",), ("choices", 0), ("choices", 0, "message"),
         ("choices", 0, "message", "content"), ("choices", 0, "logprobs"), ("choices", 0, "logprobs", "content"),
         ("choices", 0, "logprobs", "content", 2), ("choices", 0, "logprobs", "content", 2, "top_logprobs"),
         ("choices", 0, "logprobs", "content", 2, "top_logprobs", 0, "logprob"),
         ("choices", 0, "logprobs", "content", 2, "top_logprobs", 0, "token"),
         ("choices", 0, "logprobs", "content", 1, "token"), ("choices", 0, "logprobs", "content", 0, "logprob")]


def _replace(body: dict, path: tuple, value) -> dict:
    node = body
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return body


@pytest.fixture(scope="module")
def simulator():
    return LLMSimulator(LLMClient(LLMConfig(base_url="http://127.0.0.1:9/v1", api_key="test", model="m")))


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(PATHS), JSON, st.booleans())
def test_a_reply_in_any_shape_is_read_or_refused_as_invalid(simulator, path, value, logprobs):
    body = _replace(_good(), path, value)
    prompt, completion = usage_tokens(body)
    assert isinstance(prompt, int) and isinstance(completion, int) and prompt >= 0 and completion >= 0
    for read in (first_choice, message_content, logprob_content):
        try:
            read(body)
        except InvalidReply:
            pass
    try:
        values = simulator.parse_reply(body, 2, logprobs)
    except InvalidReply:
        return
    assert len(values) == 2 and all(0 <= v <= 10 for v in values)


def test_the_issue_replies(simulator):
    """Issue 18.6: each of these ended a whole `explain` run with a traceback."""
    assert usage_tokens({**_good(), "usage": "lots"}) == (0, 0)
    assert usage_tokens({"usage": {"prompt_tokens": float("inf"), "completion_tokens": -3}}) == (0, 0)
    assert simulator.parse_reply(_good(), 2, True) == pytest.approx([6.8, 6.8])
    for path, value in [(("choices",), "oops"), (("choices", 0, "logprobs"), [1, 2]), (("choices", 0, "logprobs"), "x"),
                        (("choices", 0, "logprobs", "content", 2, "top_logprobs", 0, "logprob"), 1e6),
                        (("choices", 0, "logprobs", "content", 2, "logprob"), float("nan"))]:
        body = _replace(_good(), path, value)
        if path[-1] == "logprob" and path[-2] == 2:
            body["choices"][0]["logprobs"]["content"][2]["top_logprobs"] = []
        with pytest.raises(InvalidReply):
            simulator.parse_reply(body, 2, True)
    with pytest.raises(InvalidReply, match="nested too deeply"):
        extract_json("[" * 100_000 + "]" * 100_000)
