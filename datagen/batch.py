"""OpenAI Batch API mode for scale: prepare → upload → create → poll → download → merge, resumable.

Each stage's result (file ids, batch ids, status, which chunks are merged) is saved in
``<work_dir>/state.json`` by atomic replace before the next stage starts, so a run killed at any
point continues where it stopped: ``tinyinterp datagen batch ...`` again with the same arguments.
Requests are split into chunks of at most ``max_requests_per_batch`` (the API limit is 50,000).
Outputs are merged into the same stories JSONL as the synchronous runner, matched by ``custom_id``
(= record id); failed or invalid lines go to ``<out>.errors.jsonl``. When every chunk is merged and
some ids are still missing, the next invocation submits a new round for just those ids.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from datagen.prompts import make_prompt_specs
from datagen.runner import StoryRunConfig, done_ids, errors_path_for, pending_specs, story_record, story_validator
from datagen.store import prune_errors
from tinyinterp.io.atomic import atomic_write_json
from tinyinterp.errors import TinyinterpError
from tinyinterp.io.jsonl import AppendLog, compact, iter_jsonl, write_jsonl
from tinyinterp.llm import ChatResult, InvalidReply, LLMClient
from tinyinterp.llm.batch_chunks import TERMINAL, advance_chunk, download_name, new_chunk
from tinyinterp.llm.reply import first_choice, message_content, usage_tokens

log = logging.getLogger(__name__)

STATE_FILE = "state.json"


@dataclass
class BatchRunConfig:
    stories: StoryRunConfig
    work_dir: Path | None = None
    """Folder for batch inputs/outputs and state.json; default ``<out>.batch/``."""
    poll_interval_s: float = 30.0
    max_requests_per_batch: int = 50_000
    wait: bool = True
    """Poll until every batch ends; False = submit and return (rerun later to collect)."""
    max_wait_s: float | None = None

    def __post_init__(self) -> None:
        out = self.stories.out
        self.work_dir = Path(self.work_dir) if self.work_dir else out.with_name(out.name + ".batch")


class BatchRun:
    """The state machine over ``state.json``; ``run()`` advances it as far as it can go."""

    def __init__(self, cfg: BatchRunConfig, client: LLMClient):
        self.cfg, self.client = cfg, client
        self.state_path = cfg.work_dir / STATE_FILE  # type: ignore[operator]
        self.state: dict = {}

    # -- state ---------------------------------------------------------------------------------
    def _save(self) -> None:
        atomic_write_json(self.state_path, self.state, sort_keys=True)

    def _load_or_prepare(self) -> None:
        sc = self.cfg.stories
        if self.state_path.exists():
            self.state = json.loads(self.state_path.read_text())
            if (self.state["n"], self.state["seed"]) != (sc.n, sc.seed):
                raise TinyinterpError(f"{self.state_path} belongs to a run with --n {self.state['n']} --seed "
                                      f"{self.state['seed']}; use those, or another --work-dir")
            if not all(c["merged"] for c in self.state["chunks"]):
                return
        pending, _ = pending_specs(sc)
        if not pending and self.state:
            return  # everything merged and nothing missing: nothing to submit
        round_no = self.state.get("round", -1) + 1
        self.state = {"version": 1, "n": sc.n, "seed": sc.seed, "model": self.client.model, "round": round_no,
                      "out": str(sc.out), "chunks": []}
        size = self.cfg.max_requests_per_batch
        for k in range(0, len(pending), size):
            name = f"round{round_no:02d}-input-{k // size:04d}.jsonl"
            lines = [{"custom_id": s.id, "method": "POST", "url": "/v1/chat/completions",
                      "body": {"model": self.client.model, "temperature": sc.temperature,
                               "max_tokens": sc.max_tokens, "seed": s.seed,
                               "messages": [{"role": "user", "content": s.prompt}]}}
                     for s in pending[k:k + size]]
            write_jsonl(self.cfg.work_dir / name, lines)  # type: ignore[operator]
            self.state["chunks"].append(new_chunk(name, len(lines)))
        self._save()
        log.info("batch round %d: %d requests in %d chunk(s)", round_no, len(pending), len(self.state["chunks"]))

    # -- stages --------------------------------------------------------------------------------
    async def _advance(self, chunk: dict) -> None:
        await advance_chunk(self.client, chunk, self.cfg.work_dir, self._save)
        if chunk["status"] in TERMINAL and not chunk["merged"]:
            self._merge(chunk)
            chunk["merged"] = True
            self._save()

    @staticmethod
    def _download_name(chunk: dict, key: str) -> str:
        return download_name(chunk, key)

    def _merge(self, chunk: dict) -> None:
        """Append valid outputs to the stories file; everything else to the error log."""
        sc = self.cfg.stories
        specs = {s.id: s for s in make_prompt_specs(sc.n, sc.seed, max_features=sc.max_features)}
        done = done_ids(sc.out)
        validate = story_validator(sc.min_words)
        seen: set[str] = set()
        with AppendLog(sc.out) as sink, AppendLog(errors_path_for(sc.out), lazy=True) as errors:
            for key in ("output_file_id", "error_file_id"):
                path = self.cfg.work_dir / self._download_name(chunk, key)  # type: ignore[operator]
                for line in iter_jsonl(path) if chunk[key] else ():
                    cid = line.get("custom_id")
                    seen.add(cid)
                    if cid not in specs or cid in done:
                        continue
                    resp = line.get("response") if isinstance(line.get("response"), dict) else {}
                    try:
                        if resp.get("status_code") != 200:
                            raise InvalidReply(f"batch line failed: {line.get('error') or resp.get('status_code')}")
                        body = resp["body"]
                        pt, ct = usage_tokens(body)
                        cost = self.client.stats.add_usage(self.client.model, pt, ct, self.client.config.prices, batch=True)
                        choice = first_choice(body)
                        story = validate(message_content(body))
                    except (InvalidReply, KeyError, IndexError, TypeError) as err:
                        errors.append({"id": cid, "error": f"batch: {err}", "time": time.time()})
                        continue
                    result = ChatResult(content=story, value=story, model=body.get("model", self.client.model),
                                        prompt_tokens=pt, completion_tokens=ct, cost_usd=cost,
                                        finish_reason=choice.get("finish_reason"), attempts=1, structured=False)
                    sink.append(story_record(specs[cid], result, source="batch"))
                    done.add(cid)
            if chunk["status"] == "failed":
                errors.append({"id": None, "error": f"batch {chunk['batch_id']} failed: {chunk.get('batch_errors')}",
                               "time": time.time()})
        log.info("merged %s: %d lines seen", chunk["input"], len(seen))

    async def _run(self) -> dict:
        started = time.time()
        try:
            while True:
                for chunk in self.state["chunks"]:
                    await self._advance(chunk)
                open_chunks = [c for c in self.state["chunks"] if not c["merged"]]
                if not open_chunks or not self.cfg.wait:
                    break
                if self.cfg.max_wait_s is not None and time.time() - started > self.cfg.max_wait_s:
                    break
                await asyncio.sleep(self.cfg.poll_interval_s)
        finally:
            await self.client.aclose()
        return self.summary()

    def run(self) -> dict:
        self._load_or_prepare()
        summary = asyncio.run(self._run())
        compact(self.cfg.stories.out)
        prune_errors(errors_path_for(self.cfg.stories.out), done_ids(self.cfg.stories.out))
        return summary

    def summary(self) -> dict:
        chunks = self.state["chunks"]
        n_done = len(done_ids(self.cfg.stories.out))
        return {"round": self.state["round"], "chunks": len(chunks),
                "statuses": [c["status"] for c in chunks], "merged": sum(c["merged"] for c in chunks),
                "stories_done": n_done, "stories_missing": self.cfg.stories.n - n_done,
                "state": str(self.state_path), "llm": self.client.stats.as_dict()}


def run_batch(cfg: BatchRunConfig, client: LLMClient) -> dict:
    return BatchRun(cfg, client).run()
