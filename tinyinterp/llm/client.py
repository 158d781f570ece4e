"""Async OpenAI-compatible chat client with OUR retry policy, a concurrency limit and cost accounting.

``LLMClient`` wraps ``openai.AsyncOpenAI`` with the SDK's own retries switched off
(``max_retries=0``) so that every retry is ours, counted in ``LLMStats``: 429 (honouring
``Retry-After``), 5xx, timeouts, dropped connections, malformed bodies, and replies that the caller's
``validate`` callable rejects. Structured output (``json_schema``) falls back to "reply with JSON"
plus a tolerant parser when a server rejects ``response_format``. The API key comes from the
argument or ``OPENAI_API_KEY`` and is never logged, repr'd or saved.

Example::

    client = LLMClient(LLMConfig(base_url="http://127.0.0.1:8000/v1", model="gpt-4o-mini"))
    result = client.chat_sync([{"role": "user", "content": "Say hi"}])
    print(result.content, client.stats.cost_usd)
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import openai

from tinyinterp.errors import TinyinterpError
from tinyinterp.llm.pricing import Price, estimate_cost
from tinyinterp.llm.structured import InvalidReply, extract_json, json_instruction

log = logging.getLogger(__name__)
# httpx logs one INFO line per HTTP request ("HTTP Request: POST ... 200 OK"); with the CLI's INFO
# root logger that floods stderr during grading/datagen. Our own retry/cost accounting says what
# matters, so only its warnings get through (unless someone configured these loggers themselves).
for _name in ("httpx", "httpx2", "httpcore", "httpcore2"):  # the openai SDK ships on httpx2 here
    if logging.getLogger(_name).level == logging.NOTSET:
        logging.getLogger(_name).setLevel(logging.WARNING)

ENV_BASE_URL, ENV_API_KEY, ENV_MODEL = "OPENAI_BASE_URL", "OPENAI_API_KEY", "TINYINTERP_LLM_MODEL"
DEFAULT_MODEL = "gpt-4o-mini"
_NO_KEY_PLACEHOLDER = "no-key"  # local servers ignore the key, but the SDK insists on one


class LLMError(TinyinterpError):
    """A request failed for good (retries exhausted, or an error that retrying cannot fix)."""


@dataclass
class LLMConfig:
    """Where and how to call the model. ``None`` fields fall back to the environment."""

    base_url: str | None = None
    """Server root ending in ``/v1``; ``None`` → ``$OPENAI_BASE_URL`` → the OpenAI API."""
    model: str | None = None
    """Model name; ``None`` → ``$TINYINTERP_LLM_MODEL`` → ``gpt-4o-mini``."""
    api_key: str | None = field(default=None, repr=False)
    """Secret; ``None`` → ``$OPENAI_API_KEY``. Never printed (repr=False) or saved (``to_dict``)."""
    max_concurrency: int = 8
    """Requests in flight at once (an asyncio.Semaphore around each attempt)."""
    timeout_s: float = 60.0
    """Per-attempt HTTP timeout; a slower reply counts as a retryable timeout."""
    max_retries: int = 6
    """Retries after the first attempt; total attempts = max_retries + 1."""
    backoff_base_s: float = 1.0
    """First backoff; doubles each retry, times a jitter factor in [0.5, 1)."""
    backoff_max_s: float = 60.0
    retry_after_max_s: float = 300.0
    """Cap on a server's Retry-After, so a bogus header cannot stall a run for hours."""
    prices: dict[str, Price] | None = None
    """Override of the price table (model-name prefix → Price)."""

    def __post_init__(self) -> None:
        if self.max_concurrency < 1 or self.max_retries < 0 or self.timeout_s <= 0:
            raise LLMError("LLMConfig: max_concurrency ≥ 1, max_retries ≥ 0 and timeout_s > 0 are required")

    def resolved(self) -> LLMConfig:
        """A copy with env fallbacks filled in; raises if no key is available for the OpenAI API."""
        base_url = self.base_url or os.environ.get(ENV_BASE_URL) or None
        model = self.model or os.environ.get(ENV_MODEL) or DEFAULT_MODEL
        key = self.api_key or os.environ.get(ENV_API_KEY)
        if not key:
            if base_url is None:
                raise LLMError(f"no API key: set ${ENV_API_KEY}, or pass --base-url for a local server that needs none")
            key = _NO_KEY_PLACEHOLDER
        return dataclasses.replace(self, base_url=base_url, model=model, api_key=key)

    def to_dict(self) -> dict:
        """Everything but the key, for run metadata."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("api_key", "prices")}
        d["prices"] = {k: dataclasses.asdict(v) for k, v in (self.prices or {}).items()} or None
        return d


@dataclass
class LLMStats:
    """Counters over the client's lifetime (all attempts, including retries)."""

    requests: int = 0
    """HTTP requests sent (every attempt)."""
    successes: int = 0
    retries: int = 0
    failures: int = 0
    """Calls that raised LLMError after all attempts."""
    retry_reasons: dict[str, int] = field(default_factory=dict)
    structured_fallbacks: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    def add_usage(self, model: str, prompt_tokens: int, completion_tokens: int,
                  prices: dict[str, Price] | None = None, batch: bool = False) -> float:
        cost = estimate_cost(model, prompt_tokens, completion_tokens, prices, batch=batch)
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self.cost_usd += cost
        return cost

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class ChatResult:
    """One successful chat call."""

    content: str
    value: Any
    """What ``validate`` returned (or the parsed JSON when a schema was given, else ``content``)."""
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    finish_reason: str | None
    attempts: int
    structured: bool
    """True when the server honoured ``response_format`` (False after a fallback)."""


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None, detail: str = ""):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.retry_after = reason, retry_after


def _retry_after_seconds(err: openai.APIStatusError) -> float | None:
    headers = getattr(getattr(err, "response", None), "headers", None) or {}
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            return max(0.0, float(raw) * scale)
        except ValueError:
            try:  # an HTTP date
                from email.utils import parsedate_to_datetime
                return max(0.0, parsedate_to_datetime(raw).timestamp() - time.time())
            except (TypeError, ValueError):
                return None
    return None


class LLMClient:
    """Chat completions against any OpenAI-compatible server, with retries and accounting."""

    def __init__(self, config: LLMConfig | None = None, **overrides: Any):
        self.config = (dataclasses.replace(config, **overrides) if config else LLMConfig(**overrides)).resolved()
        self.stats = LLMStats()
        self._structured_ok: bool | None = None  # unknown until the server answers a schema request
        self._loop: asyncio.AbstractEventLoop | None = None
        self._openai: openai.AsyncOpenAI | None = None
        self._sem: asyncio.Semaphore | None = None

    def __repr__(self) -> str:
        return f"LLMClient(base_url={self.config.base_url!r}, model={self.config.model!r})"

    @property
    def model(self) -> str:
        return self.config.model  # type: ignore[return-value]

    @property
    def openai(self) -> openai.AsyncOpenAI:
        """The underlying SDK client for the running event loop (made lazily, one per loop)."""
        loop = asyncio.get_running_loop()
        if self._openai is None or self._loop is not loop:
            self._loop = loop
            self._sem = asyncio.Semaphore(self.config.max_concurrency)
            self._openai = openai.AsyncOpenAI(
                api_key=self.config.api_key, base_url=self.config.base_url,
                timeout=self.config.timeout_s, max_retries=0,  # retries are ours, see call_with_retries
            )
        return self._openai

    def backoff_delay(self, retry_index: int, retry_after: float | None = None) -> float:
        """Exponential backoff with jitter; never shorter than a (capped) Retry-After."""
        delay = min(self.config.backoff_max_s, self.config.backoff_base_s * 2 ** retry_index)
        delay *= 0.5 + random.random() / 2
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.config.retry_after_max_s))
        return delay

    async def call_with_retries(self, attempt_fn: Callable[[], Any], what: str = "request") -> tuple[Any, int]:
        """Run ``await attempt_fn()`` under the semaphore, retrying transient errors.

        Returns (result, attempts). ``attempt_fn`` may raise ``InvalidReply`` to ask for a retry.
        Also used by the Batch mode for file/batch endpoints.
        """
        _ = self.openai  # bind SDK client + semaphore to this loop
        last: _Retryable | None = None
        for attempt in range(self.config.max_retries + 1):
            if attempt:
                delay = self.backoff_delay(attempt - 1, last.retry_after if last else None)
                self.stats.retries += 1
                self.stats.retry_reasons[last.reason] = self.stats.retry_reasons.get(last.reason, 0) + 1
                log.debug("retrying %s in %.2fs after %s", what, delay, last)
                await asyncio.sleep(delay)
            try:
                async with self._sem:  # type: ignore[union-attr]
                    self.stats.requests += 1
                    result = await self._classify(attempt_fn)
                self.stats.successes += 1
                return result, attempt + 1
            except _Retryable as err:
                last = err
        self.stats.failures += 1
        raise LLMError(f"{what} to {self.config.base_url or 'the OpenAI API'} failed after "
                       f"{self.config.max_retries + 1} attempts (last: {last}); check the server and rerun")

    async def _classify(self, attempt_fn: Callable[[], Any]) -> Any:
        """Turn transient failures into _Retryable; let permanent ones through as LLMError."""
        try:
            return await attempt_fn()
        except openai.APITimeoutError as err:
            raise _Retryable("timeout", detail=str(err)) from err
        except openai.APIConnectionError as err:
            raise _Retryable("connection", detail=str(err)) from err
        except openai.RateLimitError as err:
            raise _Retryable("rate_limit", _retry_after_seconds(err), str(err)) from err
        except openai.APIStatusError as err:
            if err.status_code >= 500 or err.status_code in (408, 409):
                raise _Retryable("server_error", _retry_after_seconds(err), f"HTTP {err.status_code}") from err
            self.stats.failures += 1
            raise LLMError(f"server refused the request (HTTP {err.status_code}): {err.message}") from err
        except (openai.APIResponseValidationError, json.JSONDecodeError, RecursionError) as err:
            # A 200 whose body is not the JSON we expect (truncated proxy reply, HTML error page,
            # arrays nested deeper than the parser's recursion limit).
            raise _Retryable("malformed_response", detail=f"{type(err).__name__}: {str(err)[:200]}") from err
        except InvalidReply as err:
            raise _Retryable("invalid_content", detail=str(err)) from err

    async def chat(self, messages: list[dict], *, temperature: float | None = None, max_tokens: int | None = None,
                   seed: int | None = None, json_schema: dict | None = None,
                   validate: Callable[[Any], Any] | None = None, **extra: Any) -> ChatResult:
        """One chat completion over a multi-turn ``messages`` list.

        ``json_schema`` = ``{"name": ..., "schema": {...}}`` asks for structured output; the parsed
        object is then what ``validate`` receives. ``validate`` raises ``InvalidReply`` to retry.
        """
        kwargs: dict[str, Any] = {"model": self.model, **extra}
        for name, value in (("temperature", temperature), ("max_tokens", max_tokens), ("seed", seed)):
            if value is not None:
                kwargs[name] = value
        state = {"structured": False}

        async def attempt() -> ChatResult:
            msgs = list(messages)
            use_schema = json_schema is not None and self._structured_ok is not False
            call = dict(kwargs)
            if use_schema:
                call["response_format"] = {"type": "json_schema", "json_schema": {"strict": True, **json_schema}}
            elif json_schema is not None:
                msgs = [{"role": "system", "content": json_instruction(json_schema)}] + msgs
            try:
                resp = await self.openai.chat.completions.create(messages=msgs, **call)
            except openai.BadRequestError as err:
                if not use_schema:
                    raise
                # The server does not do json_schema: remember, and retry at once without it.
                self._structured_ok = False
                self.stats.structured_fallbacks += 1
                self.stats.requests += 1  # the retry below is a second HTTP request
                log.info("server rejected response_format (%s); falling back to a JSON instruction", err.status_code)
                return await attempt()
            if use_schema:
                self._structured_ok = True
            state["structured"] = use_schema
            return self._to_result(resp, json_schema is not None, validate, use_schema)

        result, attempts = await self.call_with_retries(attempt, what="chat completion")
        result.attempts = attempts
        return result

    def _to_result(self, resp: Any, want_json: bool, validate: Callable[[Any], Any] | None,
                   structured: bool) -> ChatResult:
        try:
            choice = resp.choices[0]
            content = choice.message.content
        except (AttributeError, IndexError, TypeError) as err:
            raise InvalidReply(f"response has no choices[0].message ({type(resp).__name__})") from err
        if not isinstance(content, str) or not content.strip():
            raise InvalidReply("empty content")
        usage = getattr(resp, "usage", None)
        pt = int(getattr(usage, "prompt_tokens", 0) or 0)
        ct = int(getattr(usage, "completion_tokens", 0) or 0)
        # A rejected reply is still billed, so usage is counted before parsing/validation.
        cost = self.stats.add_usage(self.model, pt, ct, self.config.prices)
        value: Any = extract_json(content) if want_json else content
        if validate is not None:
            value = validate(value)
        model = getattr(resp, "model", None) or self.model
        return ChatResult(content=content, value=value, model=model, prompt_tokens=pt, completion_tokens=ct,
                          cost_usd=cost, finish_reason=getattr(choice, "finish_reason", None), attempts=1,
                          structured=structured)

    async def complete(self, prompt: str, **kwargs: Any) -> ChatResult:
        """Single-turn convenience: one user message."""
        return await self.chat([{"role": "user", "content": prompt}], **kwargs)

    def chat_sync(self, messages: list[dict], **kwargs: Any) -> ChatResult:
        """Blocking ``chat`` for scripts and notebooks (not from inside a running event loop)."""
        async def once() -> ChatResult:
            try:
                return await self.chat(messages, **kwargs)
            finally:
                await self.aclose()  # the SDK client belongs to this short-lived loop
        return asyncio.run(once())

    async def aclose(self) -> None:
        if self._openai is not None:
            await self._openai.close()
            self._openai = None
