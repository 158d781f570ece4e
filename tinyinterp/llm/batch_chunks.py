"""One chunk of requests through the OpenAI Batch API, resumably: upload → create → poll → download.

Shared by datagen's story batches and the neuron-explanation batches. A chunk is a JSON-friendly dict
kept in the caller's state file: ``input`` (file name of the request lines in ``work_dir``), ``file_id``,
``batch_id``, ``status``, ``output_file_id``, ``error_file_id``, ``downloaded`` (file ids already
saved), ``merged`` (set by the caller once it has used the downloads); :func:`new_chunk` makes one. Every step saves the state through ``save`` right after it succeeds, so a killed process
resumes at the step it was in and never uploads or creates a batch twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from tinyinterp.io.atomic import atomic_write_text

TERMINAL = ("completed", "failed", "expired", "cancelled")


def new_chunk(input_name: str, requests: int) -> dict:
    """A chunk not yet uploaded: ``requests`` lines in ``work_dir/input_name``; ``merged`` is the caller's flag."""
    return {"input": input_name, "requests": requests, "file_id": None, "batch_id": None, "status": None,
            "output_file_id": None, "error_file_id": None, "downloaded": [], "merged": False}


def download_name(chunk: dict, key: str) -> str:
    """File name of a chunk's downloaded output (``key="output_file_id"``) or error file."""
    return chunk["input"].replace("-input-", "-output-" if key == "output_file_id" else "-errors-")


async def advance_chunk(client, chunk: dict, work_dir: Path, save: Callable[[], None]) -> None:
    """Take ``chunk`` one step further (every step it can take now); ``client`` is a ``tinyinterp.llm`` client."""
    api, work_dir = client.openai, Path(work_dir)
    if chunk["file_id"] is None:
        data = (work_dir / chunk["input"]).read_bytes()
        f, _ = await client.call_with_retries(
            lambda: api.files.create(file=(chunk["input"], data), purpose="batch"), "file upload")
        chunk["file_id"] = f.id
        save()
    if chunk["batch_id"] is None:
        b, _ = await client.call_with_retries(
            lambda: api.batches.create(input_file_id=chunk["file_id"], endpoint="/v1/chat/completions",
                                       completion_window="24h", metadata={"tinyinterp": chunk["input"]}),
            "batch create")
        chunk["batch_id"], chunk["status"] = b.id, b.status
        save()
    if chunk["status"] not in TERMINAL:
        b, _ = await client.call_with_retries(lambda: api.batches.retrieve(chunk["batch_id"]), "batch poll")
        chunk.update(status=b.status, output_file_id=b.output_file_id, error_file_id=b.error_file_id)
        if b.status == "failed":
            chunk["batch_errors"] = str(getattr(b, "errors", None))[:2000]
        save()
    if chunk["status"] in TERMINAL:
        for key in ("output_file_id", "error_file_id"):
            file_id = chunk[key]
            if file_id and file_id not in chunk["downloaded"]:
                content, _ = await client.call_with_retries(lambda: api.files.content(file_id), "download")
                atomic_write_text(work_dir / download_name(chunk, key), content.text)
                chunk["downloaded"].append(file_id)
                save()
