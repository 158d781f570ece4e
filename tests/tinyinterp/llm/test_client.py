"""LLMClient against the real local OpenAI-compatible server: every injected fault, Retry-After,
concurrency, structured output with fallback, multi-turn, cost accounting, key hygiene."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time

import pytest

from tests.support.openai_server import default_reply, openai_server
from tinyinterp.llm import InvalidReply, LLMClient, LLMConfig, LLMError, Price

SECRET = "sk-test-SECRET-123456"
MSG = [{"role": "user", "content": "Tell me a story"}]


def make_client(server, **kw) -> LLMClient:
    cfg = dict(base_url=server.url, api_key=SECRET, model="gpt-4o-mini", timeout_s=0.5, backoff_base_s=0.005,
               backoff_max_s=0.05, max_retries=3)
    cfg.update(kw)
    return LLMClient(LLMConfig(**cfg))


@pytest.mark.parametrize("kind,params,reason", [
    ("429", {"retry_after": 0.01}, "rate_limit"),
    ("500", {}, "server_error"),
    ("slow", {"delay": 1.0}, "timeout"),
    ("drop", {}, "connection"),
    ("malformed", {}, "malformed_response"),
    ("bad_content", {"content": ""}, "invalid_content"),
])
def test_each_fault_is_retried_once(kind, params, reason):
    with openai_server() as server:
        server.inject(kind, **params)
        client = make_client(server)
        result = client.chat_sync(MSG)
        assert result.content == default_reply({"messages": MSG})
        assert result.attempts == 2
        assert len(server.chat_requests()) == 2
        assert server.faults_applied() == {kind: 1}
        assert client.stats.requests == 2 and client.stats.retries == 1 and client.stats.failures == 0
        assert client.stats.retry_reasons == {reason: 1}


def test_retry_after_is_honoured():
    with openai_server() as server:
        server.inject("429", retry_after=0.4)
        client = make_client(server, backoff_base_s=0.001)
        t0 = time.monotonic()
        client.chat_sync(MSG)
        assert time.monotonic() - t0 >= 0.4
        gap = server.chat_requests()[1].time - server.chat_requests()[0].time
        assert gap >= 0.4


def test_gives_up_after_max_retries_and_sdk_does_not_retry():
    with openai_server() as server:
        server.inject("500", times=100)
        client = make_client(server, max_retries=2)
        with pytest.raises(LLMError, match="after 3 attempts"):
            client.chat_sync(MSG)
        assert len(server.chat_requests()) == 3  # exactly ours: the SDK's own retries are off
        assert client.stats.failures == 1 and client.stats.retries == 2
    with openai_server() as server:
        server.inject("500")
        client = make_client(server, max_retries=0)
        with pytest.raises(LLMError):
            client.chat_sync(MSG)
        assert len(server.chat_requests()) == 1


def test_client_error_is_not_retried():
    with openai_server() as server:
        client = make_client(server, base_url=server.url.replace("/v1", "/nope"))
        with pytest.raises(LLMError, match="HTTP 404"):
            client.chat_sync(MSG)
        assert client.stats.requests == 1 and client.stats.retries == 0


def test_validate_rejects_then_accepts():
    replies = iter(["bad", "also bad", "GOOD reply"])
    with openai_server(lambda req: next(replies)) as server:
        client = make_client(server)

        def validate(text):
            if not text.startswith("GOOD"):
                raise InvalidReply("not good")
            return text.lower()

        result = client.chat_sync(MSG, validate=validate)
        assert result.value == "good reply" and result.attempts == 3
        assert client.stats.retry_reasons == {"invalid_content": 2}


SCHEMA = {"name": "grades", "schema": {"type": "object", "properties": {"grammar": {"type": "integer"}},
                                        "required": ["grammar"], "additionalProperties": False}}


def test_structured_output_supported():
    with openai_server(lambda req: '{"grammar": 9}') as server:
        client = make_client(server)
        result = client.chat_sync(MSG, json_schema=SCHEMA)
        assert result.value == {"grammar": 9} and result.structured
        sent = server.chat_requests()[0].json
        assert sent["response_format"]["type"] == "json_schema"
        assert sent["response_format"]["json_schema"]["name"] == "grades"


def test_structured_output_falls_back_when_rejected():
    with openai_server(lambda req: 'Sure: {"grammar": 6}', supports_json_schema=False) as server:
        client = make_client(server)
        first = client.chat_sync(MSG, json_schema=SCHEMA)
        second = client.chat_sync(MSG, json_schema=SCHEMA)  # remembers: no second rejected request
        assert first.value == second.value == {"grammar": 6}
        assert not first.structured
        reqs = server.chat_requests()
        assert len(reqs) == 3 and client.stats.structured_fallbacks == 1
        assert "response_format" not in reqs[1].json
        assert reqs[1].json["messages"][0]["role"] == "system" and "JSON" in reqs[1].json["messages"][0]["content"]


def test_multi_turn_messages_are_sent_verbatim():
    turns = [{"role": "user", "content": "Assess this story."}, {"role": "assistant", "content": "It is fine."},
             {"role": "user", "content": "Now grade it."}]
    with openai_server() as server:
        make_client(server).chat_sync(turns, temperature=0.0, max_tokens=50, seed=7)
        sent = server.chat_requests()[0].json
        assert sent["messages"] == turns
        assert (sent["temperature"], sent["max_tokens"], sent["seed"]) == (0.0, 50, 7)


def test_usage_and_cost_accounting():
    with openai_server() as server:
        client = make_client(server, prices={"gpt-4o-mini": Price(1.0, 2.0)})
        r = client.chat_sync(MSG)
        content_tokens = len(default_reply({"messages": MSG}).split())
        assert (r.prompt_tokens, r.completion_tokens) == (4, content_tokens)
        assert r.cost_usd == pytest.approx((4 * 1.0 + content_tokens * 2.0) / 1e6)
        assert client.stats.cost_usd == pytest.approx(r.cost_usd)


def test_concurrency_limit():
    lock, state = threading.Lock(), {"now": 0, "max": 0}

    def slow_reply(req):
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(0.1)
        with lock:
            state["now"] -= 1
        return "ok"

    async def many(client):
        return await asyncio.gather(*(client.chat(MSG) for _ in range(9)))

    with openai_server(slow_reply) as server:
        client = make_client(server, max_concurrency=3, timeout_s=5)
        assert len(asyncio.run(many(client))) == 9
        assert state["max"] == 3


def test_key_never_logged_repr_or_saved(caplog, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    with openai_server() as server, caplog.at_level(logging.DEBUG):
        server.inject("500")
        client = LLMClient(LLMConfig(base_url=server.url, backoff_base_s=0.001))
        client.chat_sync(MSG)
        assert client.config.api_key == SECRET  # taken from the environment
        assert server.chat_requests()[0].headers.get("authorization") == f"Bearer {SECRET}"
    for text in (caplog.text, repr(client), repr(client.config), json.dumps(client.config.to_dict()), str(client.stats)):
        assert SECRET not in text


def test_config_from_env_and_missing_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(LLMError, match="OPENAI_API_KEY"):
        LLMClient()
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("TINYINTERP_LLM_MODEL", "my-model")
    client = LLMClient()
    assert (client.config.base_url, client.model) == ("http://127.0.0.1:9/v1", "my-model")


def test_no_info_line_per_http_request(caplog):
    """Issue 10: every request logged "HTTP Request: POST ..." at INFO on stderr (even with --no-progress)."""
    caplog.set_level(logging.INFO)
    with openai_server() as server:
        client = make_client(server)
        for _ in range(3):
            client.chat_sync(MSG)
    chatter = [r for r in caplog.records if r.levelno < logging.WARNING and r.name.split(".")[0].startswith(("httpx", "httpcore"))]
    assert chatter == [] and len(server.chat_requests()) == 3
