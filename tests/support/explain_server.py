"""A crude "LLM" behind the fake OpenAI server, for testing neuron explanation and simulation offline.

- Explain requests (the last user message ends with "the main thing this neuron does is find"): reads
  the neuron's ``token<TAB>activation`` lines and explains by its most frequent strongly-active tokens:
  ``the words "Lily", "Tom", "Ben"``.
- Simulation requests (``token<TAB>unknown`` lines): 10 for a token quoted in the explanation, else 0,
  as ``token<TAB>value`` lines; with ``logprobs=True`` the reply carries per-token logprobs whose
  distribution after each TAB is centred on that value (unless ``logprobs=False`` on the server).
- JSON simulation requests ("Tokens (n): [...]"): ``{"activations": [...]}``.

Faults: everything of :class:`FakeOpenAIServer` (429, 500, drop, …), a fixed artificial ``latency``
per chat request, and ``sim_fault(request) -> str | None``: a malformed simulation ("short": one value
missing, "range": a value of 42, "text": prose) generated *with* matching logprobs.

    with explain_server(latency=0.05) as server: ...
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import time
import uuid
from collections import Counter
from typing import Any, Callable, Iterator

from tests.support.openai_server import FakeOpenAIServer, _usage

PREFIX = "the main thing this neuron does is find"
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


def _last_user(request: dict) -> str:
    return next((str(m.get("content", "")) for m in reversed(request.get("messages", [])) if m.get("role") == "user"), "")


def _first_user_of_task(request: dict) -> str:
    """The task message (a re-ask appends messages after it; the task is the last one with records)."""
    for m in reversed(request.get("messages", [])):
        if m.get("role") == "user" and ("Activations:" in str(m.get("content")) or "Tokens (" in str(m.get("content"))):
            return str(m["content"])
    return _last_user(request)


def _lines(block_text: str) -> list[tuple[str, str]]:
    """(token, value) pairs of the first <start>…<end> records in a message (all records of that block)."""
    body = block_text.split("Same activations")[0]
    pairs = []
    for chunk in body.split("<start>\n")[1:]:
        for line in chunk.split("\n<end>")[0].split("\n"):
            if "\t" in line:
                tok, _, val = line.rpartition("\t")
                pairs.append((tok, val))
    return pairs


def crude_explain(text: str, max_words: int = 6) -> str:
    counts = Counter(tok.strip() for tok, val in _lines(text) if val.isdigit() and int(val) >= 5 and tok.strip())
    words = [w for w, _ in counts.most_common(max_words)]
    return "the words " + ", ".join(json.dumps(w) for w in words) if words else "nothing in particular"


def _explanation_words(text: str) -> set[str]:
    m = re.search(re.escape(PREFIX) + r" (.*)", text)
    return {json.loads(f'"{q}"') for q in _QUOTED.findall(m.group(1) if m else "")}


def crude_values(text: str) -> tuple[list[str], list[int]]:
    tokens = [tok for tok, _ in _lines(text)]
    if "Tokens (" in text:
        tokens = json.loads(text.split("): ", 1)[1])
    words = _explanation_words(text)
    return tokens, [10 if t.strip() in words else 0 for t in tokens]


def _pieces(content: str) -> list[str]:
    """A crude tokenisation of a reply: tabs, newlines, digit runs, other runs."""
    return re.findall(r"\t|\n|\d+|[^\t\n\d]+", content)


def _logprobs_for(content: str) -> dict:
    items, text = [], ""
    for piece in _pieces(content):
        if text.endswith("\t") and piece.isdigit():
            v = int(piece)
            near = {v: 0.8, max(0, v - 1) if v > 0 else v + 1: 0.2}
            top = [{"token": str(k), "logprob": math.log(p), "bytes": None} for k, p in near.items()]
        else:
            top = [{"token": piece, "logprob": 0.0, "bytes": None}]
        items.append({"token": piece, "logprob": top[0]["logprob"], "bytes": None, "top_logprobs": top})
        text += piece
    return {"content": items, "refusal": None}


class ExplainServer(FakeOpenAIServer):
    def __init__(self, *, latency: float = 0.0, logprobs: bool = True,
                 sim_fault: Callable[[dict], str | None] | None = None, **kwargs: Any):
        super().__init__(self.reply, **kwargs)
        self.latency, self.logprobs, self.sim_fault = latency, logprobs, sim_fault

    @staticmethod
    def kind(request: dict) -> str:
        task = _first_user_of_task(request)
        if task.rstrip().endswith(PREFIX):
            return "explain"
        return "simulate_json" if "Tokens (" in task else "simulate"

    def reply(self, request: dict) -> str:
        kind, task = self.kind(request), _first_user_of_task(request)
        if kind == "explain":
            return crude_explain(task)
        tokens, values = crude_values(task)
        fault = self.sim_fault(request) if self.sim_fault else None
        if fault == "short":
            values = values[:-1]
        elif fault == "range":
            values = [42] + values[1:]
        elif fault == "text":
            return "I think this neuron is about names."
        if kind == "simulate_json":
            return json.dumps({"activations": values})
        return "<start>\n" + "\n".join(f"{t}\t{v}" for t, v in zip(tokens, values)) + "\n<end>"

    def completion_body(self, request: dict) -> dict:
        if self.latency:
            time.sleep(self.latency)  # the server is threaded: concurrent requests wait in parallel
        content = self.reply_fn(request)
        want = bool(request.get("logprobs")) and self.logprobs
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()),
            "model": request.get("model", "test-model"),
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": _logprobs_for(content) if want else None,
                         "message": {"role": "assistant", "content": content, "refusal": None}}],
            "usage": _usage(request, content),
        }

    def requests_of(self, kind: str) -> list:
        return [r for r in self.chat_requests() if r.json and self.kind(r.json) == kind]


@contextlib.contextmanager
def explain_server(**kwargs: Any) -> Iterator[ExplainServer]:
    server = ExplainServer(**kwargs).start()
    try:
        yield server
    finally:
        server.stop()


def serve_forever() -> None:
    """``python -m tests.support.explain_server [--latency S]``: print the base URL, serve until killed.

    Used by ``bench/explain_throughput.py`` so that the server's CPU time is not spent in the
    benchmarked process (a remote API costs the client nothing while it thinks).
    """
    import argparse
    import sys

    ap = argparse.ArgumentParser(description="crude-LLM OpenAI-compatible server for offline explain tests")
    ap.add_argument("--latency", type=float, default=0.0)
    args = ap.parse_args()
    with explain_server(latency=args.latency) as server:
        print(server.url, flush=True)
        try:
            sys.stdin.read()  # until the parent closes our stdin (or kills us)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    serve_forever()
