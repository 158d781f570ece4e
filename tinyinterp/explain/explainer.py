"""Explain a neuron with an LLM: the few-shot prompt of :mod:`prompts`, one reply, parsed and checked.

An empty reply or a refusal raises ``InvalidReply`` inside the attempt, so
:class:`tinyinterp.llm.LLMClient.call_with_retries` retries it like any transient fault (and counts
it); when every attempt fails the neuron ends in the runner's error log and is tried again next run.
"""

from __future__ import annotations

from dataclasses import dataclass

from tinyinterp.explain.prompts import explain_messages, parse_explanation
from tinyinterp.explain.records import NeuronRecords
from tinyinterp.llm import LLMClient
from tinyinterp.llm.reply import message_content, usage_tokens


@dataclass
class Explanation:
    text: str
    """What follows "the main thing this neuron does is find"."""
    requests: int = 1


class LLMExplainer:
    name = "llm"

    def __init__(self, client: LLMClient, temperature: float = 1.0, max_tokens: int = 60):
        self.client, self.temperature, self.max_tokens = client, temperature, max_tokens

    def messages(self, records: NeuronRecords) -> list[dict]:
        return explain_messages([(r.tokens, r.activations) for r in records.explain], records.max_activation)

    async def explain(self, records: NeuronRecords) -> Explanation:
        client = self.client
        body = {"model": client.model, "messages": self.messages(records), "temperature": self.temperature,
                "max_tokens": self.max_tokens}
        api = client.openai

        async def attempt() -> str:
            # Raw POST, reply as a dict: see LLMSimulator._create for why the SDK's typed path is avoided.
            resp = await api.post("/chat/completions", body=body, cast_to=dict)
            # A rejected reply is billed too, so usage is counted before validation.
            client.stats.add_usage(client.model, *usage_tokens(resp), client.config.prices)
            content = message_content(resp)  # InvalidReply (retried) unless the reply has the shape we need
            return parse_explanation(content)

        text, attempts = await client.call_with_retries(attempt, what="explanation")
        return Explanation(text, requests=attempts)
