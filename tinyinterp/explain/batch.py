"""Batch API mode for whole models: explain every pending neuron in batches, then simulate, at half price.

Two phases, each prepare → upload → create → poll → download → merge (the stages of
``datagen/batch.py``), with all progress in ``<out>/<slug>.batch/state.json`` (atomic replace after
every stage), so rerunning the same command after a kill, or after ``--no-wait``, continues:

1. ``explain``: one request per pending neuron (custom_id ``explain:L{l}N{n}``); parsed explanations
   are appended to ``explained.jsonl`` in the work folder; unusable ones go to the error log.
2. ``simulate``: one request per held-out record of each explained neuron (``sim:L{l}N{n}:{i}``),
   with logprobs unless ``--simulation json``. A record whose batch reply is unusable is simulated
   once more synchronously (:class:`~tinyinterp.explain.simulator.LLMSimulator`: re-ask, then flag),
   so a bad batch line is never scored as zeros. Scored neurons are appended to the same JSONL as the
   synchronous runner; finished neurons are never submitted again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from tinyinterp.io.atomic import atomic_write_json
from tinyinterp.explain.explainer import Explanation
from tinyinterp.explain.prompts import parse_explanation, simulate_json_messages, simulate_messages
from tinyinterp.explain.results import neuron_id
from tinyinterp.explain.runner import ExplainRunConfig, ExplainRunner
from tinyinterp.explain.simulator import LLMSimulator, Simulation
from tinyinterp.io.jsonl import AppendLog, iter_jsonl, read_records, write_jsonl
from tinyinterp.llm import InvalidReply, LLMClient
from tinyinterp.llm.batch_chunks import TERMINAL, advance_chunk, download_name, new_chunk
from tinyinterp.llm.reply import message_content, usage_tokens

log = logging.getLogger(__name__)


@dataclass
class BatchExplainConfig:
    run: ExplainRunConfig
    out_dir: Path
    work_dir: Path | None = None
    """Batch inputs/outputs and state.json; default ``<out_dir>/<slug>.batch``."""
    poll_interval_s: float = 30.0
    max_requests_per_batch: int = 50_000
    wait: bool = True
    """Poll until both phases end; False = advance as far as possible now and return (rerun to go on)."""
    max_wait_s: float | None = None


class BatchExplain:
    def __init__(self, model, index, cfg: BatchExplainConfig, client: LLMClient):
        self.cfg, self.client = cfg, client
        self.runner = ExplainRunner(model, index, cfg.run, cfg.out_dir, client)
        self.work = Path(cfg.work_dir or Path(cfg.out_dir) / f"{self.runner.slug}.batch")
        self.state_path, self.explained_path = self.work / "state.json", self.work / "explained.jsonl"
        self.state: dict = {}
        self.logprobs = cfg.run.simulation != "json"
        self.failed_now: set[str] = set()
        """Neurons whose explanation failed in this invocation: not resubmitted until the next one."""

    # -- preparing a phase ---------------------------------------------------------------------
    def _records(self, pairs: list[tuple[int, int]]) -> dict[str, object]:
        out = {}
        for layer in dict.fromkeys(l for l, _ in pairs):
            neurons = [n for l, n in pairs if l == layer]
            for n, recs in self.runner.builder.build(layer, neurons).items():
                out[neuron_id(layer, n)] = recs
        return out

    def _prepare(self) -> None:
        """Start the next phase that has work, or mark the run done."""
        pending = self.runner.pending()
        explained = read_records(self.explained_path)
        to_explain = [p for p in pending if neuron_id(*p) not in explained and neuron_id(*p) not in self.failed_now]
        to_simulate = [p for p in pending if neuron_id(*p) in explained]
        model = self.client.model
        lines: list[dict] = []
        if to_explain:
            phase = "explain"
            for nid, recs in self._records(to_explain).items():
                lines.append({"custom_id": f"explain:{nid}", "body": {
                    "model": model, "messages": self.runner.explainer.messages(recs),
                    "temperature": self.runner.explainer.temperature, "max_tokens": self.runner.explainer.max_tokens}})
        elif to_simulate:
            phase = "simulate"
            for nid, recs in self._records(to_simulate).items():
                text = explained[nid]["explanation"]
                for i, rec in enumerate(recs.heldout):
                    body = {"model": model, "temperature": 0.0, "max_tokens": (8 if self.logprobs else 4) * len(rec.tokens) + 32,
                            "messages": (simulate_messages if self.logprobs else simulate_json_messages)(text, rec.tokens)}
                    if self.logprobs:
                        body.update(logprobs=True, top_logprobs=15)
                    lines.append({"custom_id": f"sim:{nid}:{i}", "body": body})
        else:
            self.state = {"phase": "done", "round": self.state.get("round", -1) + 1, "chunks": []}
            self._save()
            return
        round_no = self.state.get("round", -1) + 1
        self.state = {"phase": phase, "round": round_no, "model": model, "chunks": []}
        size = self.cfg.max_requests_per_batch
        for k in range(0, len(lines), size):
            name = f"round{round_no:02d}-{phase}-input-{k // size:04d}.jsonl"
            chunk = lines[k:k + size]
            write_jsonl(self.work / name, ({**ln, "method": "POST", "url": "/v1/chat/completions"} for ln in chunk))
            self.state["chunks"].append(new_chunk(name, len(chunk)))
        self._save()
        log.info("batch round %d (%s): %d requests", round_no, phase, len(lines))

    def _save(self) -> None:
        atomic_write_json(self.state_path, self.state)

    # -- driving one chunk through the Batch API ----------------------------------------------
    async def _advance(self, chunk: dict) -> None:
        await advance_chunk(self.client, chunk, self.work, self._save)

    @staticmethod
    def _download_name(chunk: dict, key: str) -> str:
        return download_name(chunk, key)

    def _lines(self, chunk: dict):
        """(custom_id, body or None, error) of every downloaded line; usage is billed at the batch price."""
        for key in ("output_file_id", "error_file_id"):
            if not chunk[key]:
                continue
            for line in iter_jsonl(self.work / self._download_name(chunk, key)):
                resp = line.get("response") if isinstance(line.get("response"), dict) else {}
                body = resp.get("body") if resp.get("status_code") == 200 else None
                body = body if isinstance(body, dict) else None
                if body:
                    self.client.stats.add_usage(self.client.model, *usage_tokens(body), self.client.config.prices,
                                                batch=True)
                yield line.get("custom_id"), body, line.get("error") or resp.get("status_code")

    # -- merging ------------------------------------------------------------------------------
    def _merge_explain(self, chunk: dict) -> None:
        with AppendLog(self.explained_path) as sink, AppendLog(self.runner.errors) as errors:
            for cid, body, err in self._lines(chunk):
                nid = str(cid).split(":", 1)[1]
                try:
                    if body is None:
                        raise InvalidReply(f"batch line failed: {err}")
                    text = parse_explanation(message_content(body))
                except (InvalidReply, KeyError, IndexError, TypeError) as e:
                    errors.append({"id": nid, "error": f"batch explain: {e}", "time": time.time()})
                    self.failed_now.add(nid)
                    continue
                sink.append({"id": nid, "explanation": text})

    async def _merge_simulate(self, chunk: dict) -> None:
        bodies: dict[str, dict | None] = {}
        for cid, body, _ in self._lines(chunk):
            bodies[cid] = body
        explained = read_records(self.explained_path)
        pairs = sorted({tuple(int(x) for x in cid.split(":")[1][1:].split("N")) for cid in bodies})
        pending = set(self.runner.pending())
        todo = [p for p in pairs if p in pending]
        sim = self.runner.simulator
        assert isinstance(sim, LLMSimulator)
        with AppendLog(self.runner.path) as sink:
            for nid, recs in self._records(todo).items():
                text = explained[nid]["explanation"]
                sims: list[Simulation] = []
                for i, rec in enumerate(recs.heldout):
                    body = bodies.get(f"sim:{nid}:{i}")
                    try:
                        if body is None:
                            raise InvalidReply("batch line missing or failed")
                        sims.append(Simulation(sim.parse_reply(body, len(rec.tokens), self.logprobs),
                                               "logprobs" if self.logprobs else "json", requests=1))
                    except (InvalidReply, KeyError, IndexError, TypeError):
                        sims.append(await sim.simulate(text, rec.tokens))  # synchronous: re-ask, then flag
                sink.append(self.runner.record_for(recs, Explanation(text, requests=1), sims))

    # -- the loop -------------------------------------------------------------------------------
    async def _run(self) -> dict:
        started = time.time()
        try:
            while self.state["phase"] != "done":
                for chunk in self.state["chunks"]:
                    await self._advance(chunk)
                    if chunk["status"] in TERMINAL and len(chunk["downloaded"]) == sum(
                            bool(chunk[k]) for k in ("output_file_id", "error_file_id")) and not chunk["merged"]:
                        if self.state["phase"] == "explain":
                            self._merge_explain(chunk)
                        else:
                            await self._merge_simulate(chunk)
                        chunk["merged"] = True
                        self._save()
                if all(c["merged"] for c in self.state["chunks"]):
                    self._prepare()
                    continue
                if not self.cfg.wait or (self.cfg.max_wait_s is not None and time.time() - started > self.cfg.max_wait_s):
                    break
                await asyncio.sleep(self.cfg.poll_interval_s)
        finally:
            await self.client.aclose()
        return {"phase": self.state["phase"], "round": self.state["round"],
                "statuses": [c["status"] for c in self.state["chunks"]], "pending": len(self.runner.pending()),
                "out": str(self.runner.path), "state": str(self.state_path), "llm": self.client.stats.as_dict()}

    def run(self) -> dict:
        self.work.mkdir(parents=True, exist_ok=True)
        if self.state_path.exists():
            self.state = json.loads(self.state_path.read_text())
        if not self.state or self.state["phase"] == "done" or all(c["merged"] for c in self.state["chunks"]):
            self._prepare()
        return asyncio.run(self._run())


def run_batch(model, index, cfg: BatchExplainConfig, client: LLMClient) -> dict:
    """Advance the Batch API run of ``cfg`` as far as it goes (to the end when ``cfg.wait``)."""
    return BatchExplain(model, index, cfg, client).run()
