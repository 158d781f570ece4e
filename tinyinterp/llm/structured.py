"""Structured-output helpers: a JSON instruction for servers without ``json_schema``, and a tolerant parser.

``extract_json`` accepts a bare object, one wrapped in ```json fences, or one embedded in prose
(the first balanced ``{...}`` that parses). It raises ``InvalidReply`` — which the client treats as
a retryable reply — rather than returning a default, so an unparseable reply is never scored as 0.
"""

from __future__ import annotations

import json
from typing import Any


class InvalidReply(Exception):
    """The server answered, but the content is unusable; the client retries the call."""


def json_instruction(json_schema: dict) -> str:
    """System message used when the server rejects ``response_format``."""
    schema = json.dumps(json_schema.get("schema", {}), separators=(",", ":"), sort_keys=True)
    return f"Reply with only one JSON object, no other text, that matches this JSON schema: {schema}"


def _balanced_objects(text: str):
    """Yield each top-level ``{...}`` substring (string-literal aware)."""
    depth, start, in_str, escape = 0, -1, False, False
    for i, ch in enumerate(text):
        if in_str:
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
            elif ch == '"':
                in_str = False
            continue
        if ch == '"' and depth > 0:
            in_str = True
        elif ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                yield text[start: i + 1]


def extract_json(text: str) -> Any:
    """The JSON object in ``text``; raises InvalidReply when there is none."""
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.strip("`")
        stripped = stripped[4:] if stripped.lower().startswith("json") else stripped
    try:
        return json.loads(stripped)
    except json.JSONDecodeError:
        pass
    except RecursionError:  # nested deeper than the parser goes: no object we could use
        raise InvalidReply("reply JSON is nested too deeply to read") from None
    for candidate in _balanced_objects(text):
        try:
            return json.loads(candidate)
        except json.JSONDecodeError:
            continue
        except RecursionError:
            raise InvalidReply("reply JSON is nested too deeply to read") from None
    raise InvalidReply(f"no JSON object in reply: {text[:80]!r}")
