"""A real OpenAI-compatible HTTP server on 127.0.0.1 for offline tests, with fault injection.

Implements ``POST /v1/chat/completions``, ``POST /v1/files`` (multipart), ``GET /v1/files/{id}``,
``GET /v1/files/{id}/content``, ``POST /v1/batches``, ``GET /v1/batches/{id}``. It runs a stdlib
``ThreadingHTTPServer`` in a daemon thread on a free port and records every request.

Replies come from ``reply_fn(request_json) -> str`` (the message content). Faults are queued with
``inject(kind, times=..., match=...)`` and applied to the next matching chat requests:

- ``"429"``: HTTP 429 with a ``Retry-After`` header (``retry_after`` seconds, may be fractional);
- ``"500"``: HTTP 500;
- ``"slow"``: sleep ``delay`` seconds before answering (use a delay above the client timeout);
- ``"drop"``: close the socket without any response;
- ``"malformed"``: HTTP 200 whose body is not JSON;
- ``"bad_content"``: a well-formed completion whose content is ``content`` (default empty);
- ``"body"``: HTTP 200 with ``mutate(normal_reply_dict)`` as the JSON body, or the bytes ``raw``
  (replies in shapes a half-compatible server or proxy sends: ``usage`` as a string, …).

Example::

    with openai_server() as server:
        server.inject("429", times=2, retry_after=0.05)
        client = LLMClient(base_url=server.url, api_key="test")
        ...
        assert len(server.chat_requests()) == 3
"""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import json
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

FAULT_KINDS = ("429", "500", "slow", "drop", "malformed", "bad_content", "body")


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    """Lower-cased header names."""
    body: bytes
    json: Any
    fault: str | None = None
    """The fault injected into this request, if any."""
    time: float = field(default_factory=time.time)


@dataclass
class Fault:
    kind: str
    times: int = 1
    match: Callable[[dict], bool] | None = None
    """Only requests whose JSON satisfies ``match`` get this fault (None = any chat request)."""
    retry_after: float = 0.05
    delay: float = 2.0
    content: str = ""
    mutate: Callable[[dict], Any] | None = None
    raw: bytes | None = None


def default_reply(request: dict) -> str:
    """A deterministic 'story' that quotes the last user message, long enough for validators."""
    last = next((m.get("content", "") for m in reversed(request.get("messages", [])) if m.get("role") == "user"), "")
    words = " ".join(str(last).split()[:12])
    return (f"Once upon a time, a little cat played in the sun. It was a happy day. "
            f"The cat said, \"Look!\" They laughed and played. Prompt words: {words}. The end.")


def _usage(request: dict, content: str) -> dict:
    prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in request.get("messages", []))
    completion_tokens = len(content.split())
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


class FakeOpenAIServer:
    """The server object: start/stop, fault queue, recorded requests, in-memory files and batches."""

    def __init__(self, reply_fn: Callable[[dict], str] = default_reply, *, supports_json_schema: bool = True,
                 batch_polls_to_complete: int = 1, batch_fail: Callable[[dict], bool] | None = None):
        self.reply_fn = reply_fn
        self.supports_json_schema = supports_json_schema
        self.batch_polls_to_complete = batch_polls_to_complete
        self.batch_fail = batch_fail  # batch lines for which this returns True end up in the error file
        self.requests: list[RecordedRequest] = []
        self.files: dict[str, dict] = {}
        self.batches: dict[str, dict] = {}
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> FakeOpenAIServer:
        handler = type("Handler", (_Handler,), {"server_state": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        """Base URL for ``LLMConfig(base_url=...)`` / ``OPENAI_BASE_URL``."""
        return f"http://127.0.0.1:{self.port}/v1"

    # -- faults and records ------------------------------------------------------------------
    def inject(self, kind: str, times: int = 1, match: Callable[[dict], bool] | None = None, **params: Any) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {FAULT_KINDS}")
        with self._lock:
            self._faults.append(Fault(kind=kind, times=times, match=match, **params))

    def pending_faults(self) -> int:
        with self._lock:
            return sum(f.times for f in self._faults)

    def _take_fault(self, request: dict) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.times > 0 and (fault.match is None or fault.match(request)):
                    fault.times -= 1
                    if fault.times == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _record(self, rec: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(rec)

    def chat_requests(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def faults_applied(self) -> dict[str, int]:
        out: dict[str, int] = {}
        with self._lock:
            for r in self.requests:
                if r.fault:
                    out[r.fault] = out.get(r.fault, 0) + 1
        return out

    # -- reply building ----------------------------------------------------------------------
    def completion_body(self, request: dict) -> dict:
        content = self.reply_fn(request)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()),
            "model": request.get("model", "test-model"),
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": content, "refusal": None}}],
            "usage": _usage(request, content),
        }

    def _finish_batch(self, batch: dict) -> None:
        """Run every line of the batch input through reply_fn; write output and error files."""
        lines = self.files[batch["input_file_id"]]["content"].decode().splitlines()
        out, err = [], []
        for line in filter(None, (ln.strip() for ln in lines)):
            item = json.loads(line)
            body = item.get("body", {})
            if self.batch_fail is not None and self.batch_fail(item):
                err.append({"id": f"batch_req_{uuid.uuid4().hex[:8]}", "custom_id": item["custom_id"],
                            "response": {"status_code": 500, "body": {"error": {"message": "injected failure"}}},
                            "error": {"code": "server_error", "message": "injected failure"}})
                continue
            out.append({"id": f"batch_req_{uuid.uuid4().hex[:8]}", "custom_id": item["custom_id"],
                        "response": {"status_code": 200, "request_id": uuid.uuid4().hex,
                                     "body": self.completion_body(body)}, "error": None})
        batch["output_file_id"] = self._store_file("\n".join(map(json.dumps, out)).encode() + b"\n", "batch_output") if out else None
        batch["error_file_id"] = self._store_file("\n".join(map(json.dumps, err)).encode() + b"\n", "batch_output") if err else None
        batch["request_counts"] = {"total": len(out) + len(err), "completed": len(out), "failed": len(err)}
        batch["status"], batch["completed_at"] = "completed", int(time.time())

    def _store_file(self, content: bytes, purpose: str, filename: str = "data.jsonl") -> str:
        file_id = f"file-{uuid.uuid4().hex[:16]}"
        self.files[file_id] = {"id": file_id, "object": "file", "bytes": len(content), "created_at": int(time.time()),
                               "filename": filename, "purpose": purpose, "status": "processed", "content": content}
        return file_id


class _Handler(BaseHTTPRequestHandler):
    server_state: FakeOpenAIServer
    protocol_version = "HTTP/1.0"  # one request per connection: simple, and a drop affects only one call

    def log_message(self, *args: Any) -> None:  # keep pytest output quiet
        pass

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()

    def _send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send_bytes(status, json.dumps(obj).encode(), "application/json", headers)

    def _send_bytes(self, status: int, data: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client gave up (timeout test): nothing to do
            pass

    def _headers(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self.headers.items()}  # HTTP header names are case-insensitive

    def _read(self) -> tuple[bytes, Any]:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            parsed = json.loads(body) if body and "json" in (self.headers.get("Content-Type") or "") else None
        except json.JSONDecodeError:
            parsed = None
        return body, parsed

    def do_GET(self) -> None:
        st = self.server_state
        st._record(RecordedRequest("GET", self.path, self._headers(), b"", None))
        parts = self.path.rstrip("/").split("/")
        if len(parts) == 5 and parts[2] == "files" and parts[4] == "content" and parts[3] in st.files:
            return self._send_bytes(200, st.files[parts[3]]["content"], "application/octet-stream")
        if len(parts) == 4 and parts[2] == "files" and parts[3] in st.files:
            return self._send_json(200, {k: v for k, v in st.files[parts[3]].items() if k != "content"})
        if len(parts) == 4 and parts[2] == "batches" and parts[3] in st.batches:
            batch = st.batches[parts[3]]
            with st._lock:
                batch["_polls"] += 1
                if batch["status"] != "completed" and batch["_polls"] >= st.batch_polls_to_complete:
                    st._finish_batch(batch)
                elif batch["status"] == "validating":
                    batch["status"] = "in_progress"
            return self._send_json(200, {k: v for k, v in batch.items() if not k.startswith("_")})
        self._send_json(404, {"error": {"message": f"no route GET {self.path}", "type": "not_found"}})

    def do_POST(self) -> None:
        st = self.server_state
        body, parsed = self._read()
        path = self.path.rstrip("/")
        if path == "/v1/chat/completions":
            return self._chat(body, parsed or {})
        st._record(RecordedRequest("POST", self.path, self._headers(), body, parsed))
        if path.endswith("/v1/files"):
            return self._upload(body)
        if path.endswith("/v1/batches") and parsed:
            if parsed.get("input_file_id") not in st.files:
                return self._send_json(400, {"error": {"message": "unknown input_file_id"}})
            batch_id = f"batch_{uuid.uuid4().hex[:16]}"
            st.batches[batch_id] = {
                "id": batch_id, "object": "batch", "endpoint": parsed.get("endpoint"), "errors": None,
                "input_file_id": parsed["input_file_id"], "completion_window": parsed.get("completion_window", "24h"),
                "status": "validating", "output_file_id": None, "error_file_id": None, "created_at": int(time.time()),
                "metadata": parsed.get("metadata"), "request_counts": {"total": 0, "completed": 0, "failed": 0},
                "_polls": 0,
            }
            return self._send_json(200, {k: v for k, v in st.batches[batch_id].items() if not k.startswith("_")})
        self._send_json(404, {"error": {"message": f"no route POST {self.path}", "type": "not_found"}})

    def _upload(self, body: bytes) -> None:
        ctype = self.headers.get("Content-Type", "")
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {ctype}\r\n\r\n".encode() + body)
        fields: dict[str, tuple[bytes, str | None]] = {}
        for part in msg.iter_parts():
            fields[part.get_param("name", header="content-disposition")] = (
                part.get_payload(decode=True) or b"", part.get_filename())
        if "file" not in fields or "purpose" not in fields:
            return self._send_json(400, {"error": {"message": "multipart needs 'file' and 'purpose'"}})
        purpose = fields["purpose"][0].decode()
        file_id = self.server_state._store_file(fields["file"][0], purpose, fields["file"][1] or "upload.jsonl")
        self._send_json(200, {k: v for k, v in self.server_state.files[file_id].items() if k != "content"})

    def _chat(self, body: bytes, request: dict) -> None:
        st = self.server_state
        fault = st._take_fault(request)
        st._record(RecordedRequest("POST", self.path, self._headers(), body, request, fault.kind if fault else None))
        if request.get("response_format", {}).get("type") == "json_schema" and not st.supports_json_schema:
            return self._send_json(400, {"error": {"message": "response_format json_schema is not supported",
                                                   "type": "invalid_request_error", "param": "response_format"}})
        if fault is None:
            return self._send_json(200, st.completion_body(request))
        if fault.kind == "429":
            return self._send_json(429, {"error": {"message": "rate limited", "type": "rate_limit_error"}},
                                   {"Retry-After": str(fault.retry_after)})
        if fault.kind == "500":
            return self._send_json(500, {"error": {"message": "injected server error", "type": "server_error"}})
        if fault.kind == "slow":
            time.sleep(fault.delay)
            return self._send_json(200, st.completion_body(request))
        if fault.kind == "drop":
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return None
        if fault.kind == "malformed":
            return self._send_bytes(200, b'{"id": "chatcmpl-broken", "choices": [', "application/json")
        if fault.kind == "body":
            if fault.raw is not None:
                return self._send_bytes(200, fault.raw, "application/json")
            return self._send_json(200, fault.mutate(st.completion_body(request)))  # type: ignore[misc]
        body_obj = st.completion_body(request)
        body_obj["choices"][0]["message"]["content"] = fault.content
        return self._send_json(200, body_obj)


@contextlib.contextmanager
def openai_server(reply_fn: Callable[[dict], str] = default_reply, **kwargs: Any) -> Iterator[FakeOpenAIServer]:
    """Context manager (and the body of a pytest fixture) that runs a FakeOpenAIServer."""
    server = FakeOpenAIServer(reply_fn, **kwargs).start()
    try:
        yield server
    finally:
        server.stop()


def openai_server_fixture():
    """Use in a test module as: ``fake_openai = pytest.fixture(openai_server_fixture)``."""
    with openai_server() as server:
        yield server
