"""Simulate a neuron from its explanation with an LLM: 0–10 per token, from logprobs or validated JSON.

With logprobs (the server returns them for ``logprobs=True``), the model copies each token and writes
an activation after a TAB; the prediction for a token is the expected value over the probabilities
of "0" … "10" at the token after that TAB (renormalised over those values), as in Bills et al. 2023.
Without logprobs, the model replies ``{"activations": [...]}``; the reply must hold exactly one number
in 0..10 per token. An unusable reply (wrong count, out of range, unparseable) is re-asked once with
the problem stated; a second failure returns a *flagged* :class:`Simulation` with ``predicted=None``.
A flagged simulation is never scored (never read as zeros). Transport faults (429, 5xx, timeouts)
are retried by :class:`tinyinterp.llm.LLMClient.call_with_retries`; usage is added to its stats.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from typing import Any

import openai

from tinyinterp.explain.prompts import parse_json_activations, simulate_json_messages, simulate_messages
from tinyinterp.explain.records import MAX_NORMALIZED
from tinyinterp.llm import InvalidReply, LLMClient, LLMError, extract_json
from tinyinterp.llm.reply import logprob_content, message_content, usage_tokens

log = logging.getLogger(__name__)

SIMULATION_MODES = ("auto", "logprobs", "json")
VALUES = {str(i): i for i in range(MAX_NORMALIZED + 1)}


@dataclass
class Simulation:
    """Predicted activations (0–10) of one record, or a flag saying why there are none."""

    predicted: list[float] | None
    method: str
    """"logprobs", "json" or "baseline"."""
    flagged: bool = False
    reason: str | None = None
    requests: int = 0


def expected_value(top_logprobs: list[tuple[str, float]]) -> float | None:
    """Expected activation over the entries that are "0".."10" (renormalised); None if there are none."""
    probs: dict[int, float] = {}
    for token, logprob in top_logprobs:
        value = VALUES.get(token.strip())
        if value is not None:
            probs[value] = probs.get(value, 0.0) + math.exp(logprob)
    total = sum(probs.values())
    return sum(v * p for v, p in probs.items()) / total if total > 0 else None


def activations_from_logprobs(content_logprobs: list[dict], n_tokens: int) -> list[float]:
    """Expected values at the token after each TAB of the reply; InvalidReply unless exactly ``n_tokens``.

    ``content_logprobs`` is ``choices[0].logprobs.content`` as :func:`tinyinterp.llm.reply.logprob_content`
    checks it (every logprob a finite number <= 0).
    """
    text, out = "", []
    for item in content_logprobs:
        token = item["token"]
        if text.endswith("\t"):
            pairs = [(t["token"], t["logprob"]) for t in item["top_logprobs"]] or [(token, item["logprob"])]
            ev = expected_value(pairs)
            if ev is None:
                raise InvalidReply(f"the activation after a TAB is {token!r}, not a number 0..{MAX_NORMALIZED}")
            out.append(ev)
        text += token
    if len(out) != n_tokens:
        raise InvalidReply(f"reply has {len(out)} activations for {n_tokens} tokens")
    return out


class LLMSimulator:
    """Predicts activations from an explanation through an :class:`LLMClient`."""

    def __init__(self, client: LLMClient, mode: str = "auto", top_logprobs: int = 15, temperature: float = 0.0):
        if mode not in SIMULATION_MODES:
            raise LLMError(f"--simulation must be one of {', '.join(SIMULATION_MODES)}, got {mode!r}")
        self.client, self.mode, self.top_logprobs, self.temperature = client, mode, top_logprobs, temperature
        self.logprobs_ok: bool | None = None if mode == "auto" else mode == "logprobs"
        self._probe = asyncio.Lock()  # in auto mode, one request finds out whether logprobs come back

    async def simulate(self, explanation: str, tokens: list[str]) -> Simulation:
        """Predicted activations of ``tokens`` (a flagged Simulation when the replies were unusable twice)."""
        if self.logprobs_ok is None:
            async with self._probe:
                if self.logprobs_ok is None:
                    return await self._simulate(explanation, tokens)
        return await self._simulate(explanation, tokens)

    async def _create(self, messages: list[dict], n_tokens: int, logprobs: bool):
        """One completion (retried on transport faults); None when the server refuses logprobs."""
        api = self.client.openai
        kwargs: dict[str, Any] = {"model": self.client.model, "messages": messages, "temperature": self.temperature,
                                  "max_tokens": (8 if logprobs else 4) * n_tokens + 32}
        if logprobs:
            kwargs.update(logprobs=True, top_logprobs=self.top_logprobs)

        async def attempt():
            try:
                # The raw POST (reply as a plain dict) skips the SDK's recursive transform of the long
                # messages and its pydantic models of ~100 logprob entries: together they cost more
                # CPU per request than everything else here, and cap the requests a process can keep in flight.
                resp = await api.post("/chat/completions", body=kwargs, cast_to=dict)
            except openai.BadRequestError:
                if logprobs:
                    return None
                raise
            if not isinstance(resp, dict):
                raise InvalidReply(f"reply body is {type(resp).__name__}, not a JSON object")  # retried by the client
            self.client.stats.add_usage(self.client.model, *usage_tokens(resp), self.client.config.prices)
            return resp

        resp, _ = await self.client.call_with_retries(attempt, what="simulation")
        return resp

    @staticmethod
    def _content(resp) -> str:
        """The reply's text for a re-ask ("" when the reply has none in a usable shape)."""
        try:
            return message_content(resp)
        except InvalidReply:
            return ""

    async def _simulate(self, explanation: str, tokens: list[str]) -> Simulation:
        n, probes = len(tokens), 0
        if self.logprobs_ok is not False:
            messages = simulate_messages(explanation, tokens)
            resp = await self._create(messages, n, logprobs=True)
            try:
                has_logprobs = logprob_content(resp) is not None
            except InvalidReply:
                has_logprobs = True  # logprobs came back, in a broken shape: re-ask, then flag
            if has_logprobs:
                self.logprobs_ok = True
                return await self._with_reask(messages, resp, n, True)
            if self.mode == "logprobs":
                return Simulation(None, "logprobs", flagged=True, reason="the server returned no logprobs", requests=1)
            if self.logprobs_ok is None:
                log.info("the server returns no logprobs; simulating with JSON replies instead")
            self.logprobs_ok, probes = False, 1
        messages = simulate_json_messages(explanation, tokens)
        resp = await self._create(messages, n, logprobs=False)
        sim = await self._with_reask(messages, resp, n, False)
        sim.requests += probes  # the request that found no logprobs was paid for too
        return sim

    def parse_reply(self, resp: dict, n: int, logprobs: bool) -> list[float]:
        """Validated activations of a reply (a chat-completion JSON dict); InvalidReply if unusable."""
        if logprobs:
            content = logprob_content(resp)
            if content is None:
                raise InvalidReply("the reply has no logprobs")
            return activations_from_logprobs(content, n)
        return parse_json_activations(extract_json(message_content(resp)), n)

    async def _with_reask(self, messages: list[dict], resp, n: int, logprobs: bool) -> Simulation:
        method = "logprobs" if logprobs else "json"
        try:
            return Simulation(self.parse_reply(resp, n, logprobs), method, requests=1)
        except InvalidReply as first:
            fix = (f"That reply was unusable: {first}. There are exactly {n} tokens. Reply again with "
                   + ("one line token<tab>activation per token, in order, between <start> and <end>."
                      if logprobs else f"a JSON object {{\"activations\": [...]}} with exactly {n} integers from 0 to 10."))
            retry = messages + [{"role": "assistant", "content": self._content(resp) or "(empty)"},
                                {"role": "user", "content": fix}]
            resp2 = await self._create(retry, n, logprobs=logprobs)
            try:
                return Simulation(self.parse_reply(resp2, n, logprobs), method, requests=2)
            except InvalidReply as second:
                log.debug("simulation flagged: %s / %s", first, second)
                return Simulation(None, method, flagged=True, reason=f"{first}; after re-asking: {second}", requests=2)
