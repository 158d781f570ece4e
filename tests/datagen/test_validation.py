"""Refusals and assistant meta-text are never stored as stories or summaries (issue 10)."""

from __future__ import annotations

import json
import re

import pytest

from datagen.instruct import InstructRunConfig, generate_instruct, summary_validator
from datagen.runner import StoryRunConfig, errors_path_for, generate_stories, story_validator
from datagen.validation import check_content
from tests.support.openai_server import openai_server
from tinyinterp.llm import InvalidReply, LLMClient, LLMConfig

STORY = ("Once upon a time, there was a little dog named Max. Max liked to run in the park with his friend Sue. "
         "One day, Max found a big red ball under a tree, and he played with it all day long.")
REFUSALS = [
    "I cannot write that.", "I can't write a story like that.", "I'm sorry, but I can't help with this request.",
    "I am sorry, but I cannot create this story.", "As an AI language model, I cannot write stories.",
    "Sorry, but I won't do that.", "I apologize, but this request goes against my guidelines.",
    "I’m unable to summarize this story.", "This violates the content policy.",
]
META = [
    "Sure! Here is a story: " + STORY, "Here's a short story for you:\n\n" + STORY, "Certainly. " + STORY,
    "Title: Max and the Ball\n\n" + STORY, "Summary: Max finds a red ball.", "**Max and the Ball**\n\n" + STORY,
    STORY + "\n\nI hope you enjoy this story!", STORY + " Let me know if you want another one.",
]
GOOD = [
    STORY,
    'Tom was sad. "I can\'t find my ball!" he said. "I\'m sorry, but I cannot help," said the cat. ' + STORY,
    "“I cannot do it,” said Lily. Her mom smiled and said she could try again. " + STORY,
    "Max found a red ball and played with it all day.",
    "Sure enough, the sun came out and the children played in the park. " + STORY,
]


@pytest.mark.parametrize("reply", REFUSALS + META)
def test_refusals_and_meta_text_are_rejected(reply):
    with pytest.raises(InvalidReply, match="refusal or meta-text"):
        check_content(reply, "story")
    with pytest.raises(InvalidReply):
        summary_validator(reply)
    with pytest.raises(InvalidReply):
        story_validator(5)(reply + " " + STORY if len(reply.split()) < 5 else reply)


@pytest.mark.parametrize("reply", GOOD)
def test_stories_with_dialogue_pass(reply):
    assert check_content(reply, "story") == reply
    assert summary_validator(reply) == " ".join(reply.split())


def test_a_refused_summary_is_retried_and_never_stored(tmp_path):
    stories, instruct = tmp_path / "stories.jsonl", tmp_path / "instruct.jsonl"

    def reply(req: dict) -> str:
        text = req["messages"][-1]["content"]
        if text.startswith("Summarize"):
            if "kite" in text:
                return "I cannot write that."  # exactly the reply issue 10 found stored as a summary
            return "A dog plays in the park."
        noun = re.search(r'the noun "([^"]+)"', text).group(1)
        return f"Once upon a time there was a {noun}. " + ("The kite flew. " if noun < "m" else "") + STORY

    with openai_server(reply) as server:
        client = LLMClient(LLMConfig(base_url=server.url, api_key="k", backoff_base_s=0.001, max_retries=2))
        generate_stories(StoryRunConfig(out=stories, n=8, progress=False), client)
        client = LLMClient(LLMConfig(base_url=server.url, api_key="k", backoff_base_s=0.001, max_retries=2))
        summary = generate_instruct(InstructRunConfig(input=stories, out=instruct, progress=False), client)
    recs = [json.loads(line) for line in instruct.read_text().splitlines()]
    refused = [line for line in stories.read_text().splitlines() if "kite" in line]
    assert 0 < len(refused) < 8 and (summary.failed, summary.written) == (len(refused), 8 - len(refused))
    assert len(recs) == 8 - len(refused) and all(r["summary"] == "A dog plays in the park." for r in recs)
    assert len(errors_path_for(instruct).read_text().splitlines()) == len(refused)
