"""Reject LLM replies that are not a story or summary: refusals and assistant meta-text.

A reply like ``"I cannot write that."`` or ``"Sure! Here is a story about a dog: ..."`` must never
become training text. :func:`check_content` raises ``InvalidReply`` (the client then retries the
request, and a request that keeps failing lands in ``<out>.errors.jsonl``). Dialogue is removed
before the refusal phrases are looked for, so a character may still say "I'm sorry, but I can't".

    >>> check_content("Once upon a time, Tom said, \\"I can't find my ball!\\"", "story")
    'Once upon a time, Tom said, "I can\\'t find my ball!"'
"""

from __future__ import annotations

import re

from tinyinterp.llm import InvalidReply

_APOS = "['’]"
_VERBS = r"(?:write|create|produce|generate|help|assist|provide|comply|fulfil+|do\s+(?:that|this)|continue|summari[sz]e)"
# Refusals anywhere outside dialogue.
_REFUSAL = re.compile(
    rf"\bI\s*(?:cannot|can\s*not|can{_APOS}t|won{_APOS}t|will\s+not|am\s+(?:unable|not\s+able)|{_APOS}m\s+(?:unable|not\s+able))"
    rf"(?:\s+to)?\s+{_VERBS}\b"
    rf"|\b(?:I{_APOS}m|I\s+am)\s+sorry,?\s+but\b|\bI\s+apologi[sz]e\b|\bSorry,\s+but\b"
    r"|\bas\s+an\s+AI\b|\bas\s+a\s+(?:large\s+)?language\s+model\b|\bcontent\s+polic(?:y|ies)\b",
    re.I,
)
# Assistant framing at the start or the end of the reply.
_META_START = re.compile(
    rf"^\s*(?:(?:sure|certainly|of\s+course|absolutely|okay|ok)\s*[,!.:]|here{_APOS}?s\b|here\s+(?:is|are)\b"
    r"|(?:title|summary|story)\s*:|\*\*)",
    re.I,
)
_META_END = re.compile(r"(?:let\s+me\s+know\b|I\s+hope\s+you\s+(?:enjoy|like)|feel\s+free\s+to)[^\n]*\s*$", re.I)
_DIALOGUE = re.compile(r"\"[^\"\n]*\"|“[^”\n]*”")


def check_content(text: str, what: str) -> str:
    """``text`` if it reads as plain story/summary prose, else ``InvalidReply`` naming what was found."""
    prose = _DIALOGUE.sub(" ", text)
    found = _REFUSAL.search(prose) or _META_START.search(text) or _META_END.search(prose)
    if found:
        raise InvalidReply(f"reply is a refusal or meta-text, not a {what}: {found.group(0).strip()[:40]!r}")
    return text
