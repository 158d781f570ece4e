"""Read the parts of a chat-completion reply we use, with every shape check in one place.

The hot paths POST raw and get the reply as plain JSON (a dict), so nothing has validated its
shape: a proxy or a half-compatible server may send ``usage`` as a string, ``choices`` as a
string, ``logprobs`` as a list, a logprob of ``1e6``, or JSON nested too deep to parse. Each
accessor here returns the part in the shape we need or raises :class:`InvalidReply`, which the
callers already treat as "retry or flag this request" — so one odd reply never ends a run.

    >>> message_content({"choices": [{"message": {"content": "hi"}}]})
    'hi'
    >>> usage_tokens({"usage": "lots"})
    (0, 0)
"""

from __future__ import annotations

import math
from typing import Any

from tinyinterp.llm.structured import InvalidReply

# Servers round; a logprob a hair above 0 is a probability of 1. Anything larger is not a logprob.
_LOGPROB_SLACK = 1e-3


def _count(value: Any) -> int:
    """A token count, or 0 for anything that is not a finite non-negative number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0
    if not math.isfinite(value) or value < 0:
        return 0
    return int(value)


def usage_tokens(resp: Any) -> tuple[int, int]:
    """(prompt_tokens, completion_tokens) of a reply; a missing or odd ``usage`` counts as (0, 0)."""
    usage = resp.get("usage") if isinstance(resp, dict) else None
    if not isinstance(usage, dict):
        return 0, 0
    return _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))


def first_choice(resp: Any) -> dict:
    """``choices[0]`` as a dict, or InvalidReply."""
    if not isinstance(resp, dict):
        raise InvalidReply(f"reply body is {type(resp).__name__}, not a JSON object")
    choices = resp.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise InvalidReply(f"reply has no choices[0] object (choices is {type(choices).__name__})")
    return choices[0]


def message_content(resp: Any) -> str:
    """``choices[0].message.content`` as a string ("" for an explicit null), or InvalidReply."""
    message = first_choice(resp).get("message")
    if not isinstance(message, dict):
        raise InvalidReply(f"reply's choices[0].message is {type(message).__name__}, not an object")
    content = message.get("content")
    if content is None:
        return ""
    if not isinstance(content, str):
        raise InvalidReply(f"reply's message content is {type(content).__name__}, not a string")
    return content


def _logprob(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidReply(f"{where} logprob {value!r} is not a finite number")
    if value > _LOGPROB_SLACK:
        raise InvalidReply(f"{where} logprob {value!r} is above 0, so not a log-probability")
    return min(float(value), 0.0)


def _token(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise InvalidReply(f"{where} token is {type(value).__name__}, not a string")
    return value


def logprob_content(resp: Any) -> list[dict] | None:
    """``choices[0].logprobs.content`` checked item by item; None when the server sent no logprobs.

    Each item comes back as ``{"token": str, "logprob": float <= 0, "top_logprobs": [{"token", "logprob"}]}``.
    """
    logprobs = first_choice(resp).get("logprobs")
    if logprobs is None:
        return None
    if not isinstance(logprobs, dict):
        raise InvalidReply(f"reply's logprobs is {type(logprobs).__name__}, not an object")
    content = logprobs.get("content")
    if content is None:
        return None
    if not isinstance(content, list):
        raise InvalidReply(f"reply's logprobs.content is {type(content).__name__}, not a list")
    items = []
    for i, item in enumerate(content):
        if not isinstance(item, dict):
            raise InvalidReply(f"logprobs.content[{i}] is {type(item).__name__}, not an object")
        top = item.get("top_logprobs") or []
        if not isinstance(top, list) or not all(isinstance(t, dict) for t in top):
            raise InvalidReply(f"logprobs.content[{i}].top_logprobs is not a list of objects")
        where = f"logprobs.content[{i}]"
        items.append({
            "token": _token(item.get("token", ""), where),
            "logprob": _logprob(item.get("logprob", 0.0), where),
            "top_logprobs": [{"token": _token(t.get("token", ""), where), "logprob": _logprob(t.get("logprob"), where)}
                             for t in top],
        })
    return items
