"""Explain → simulate → score many neurons, resumably, with many LLM requests in flight.

A producer builds activation records layer by layer (model passes in a worker thread, so they overlap
the network waits) and feeds a bounded queue; ``neuron_concurrency`` workers each explain a neuron and
simulate all its held-out records at once. The number of HTTP requests in flight is bounded by the
client's ``max_concurrency`` (its semaphore), so the runner keeps that many busy. Each finished
neuron is one fsynced line in ``RUN/analysis/explanations/<slug>.jsonl`` (id ``L{l}N{n}``); on start,
neurons already there are skipped, so a run killed at any point (even ``kill -9``) continues where it
stopped and never pays twice for a neuron. Neurons whose requests fail for good go to
``<slug>.errors.jsonl`` and are retried on the next run.

    >>> runner = ExplainRunner(model, index, ExplainRunConfig(explainer="baseline"), out_dir=run / "analysis/explanations")
    >>> summary = runner.run()
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from tinyinterp.errors import TinyinterpError
from tinyinterp.explain.baseline import BaselineExplainer, BaselineSimulator
from tinyinterp.explain.explainer import LLMExplainer
from tinyinterp.explain.records import NeuronRecords, RecordBuilder, RecordConfig
from tinyinterp.explain.results import errors_path, explainer_slug, finished_ids, neuron_id, results_path
from tinyinterp.explain.scoring import score_simulations
from tinyinterp.explain.simulator import LLMSimulator
from tinyinterp.io.jsonl import AppendLog
from tinyinterp.llm import LLMClient, LLMError

log = logging.getLogger(__name__)

EXPLAINERS = ("baseline", "llm")
TOP_BY = ("purity", "random")


@dataclass
class ExplainRunConfig:
    explainer: str = "baseline"
    """"baseline" (offline, deterministic) or "llm" (needs an LLMClient)."""
    layers: list[int] | None = None
    """Layers to explain (None = all)."""
    neurons: list[tuple[int | None, int]] | None = None
    """(layer, neuron) pairs; layer None = that neuron in every selected layer. None = all neurons."""
    top_by: str | None = None
    """Order: "purity" (type purity, highest first), "random" (seeded shuffle), None (layer, neuron)."""
    max_neurons: int | None = None
    """Explain at most this many (after ordering), e.g. the 100 purest."""
    records: RecordConfig = field(default_factory=RecordConfig)
    simulation: str = "auto"
    """"auto" (logprobs when the server returns them, else JSON), "logprobs" or "json"."""
    neuron_concurrency: int = 32
    """Neurons in progress at once; requests in flight are capped by the client's max_concurrency."""
    records_chunk: int = 256
    """Neurons whose records are built in one batched model pass (they share windows: bigger = fewer passes)."""
    seed: int = 0
    progress: bool = False

    def __post_init__(self) -> None:
        if self.explainer not in EXPLAINERS:
            raise TinyinterpError(f"--explainer must be one of {', '.join(EXPLAINERS)}, got {self.explainer!r}")
        if self.top_by is not None and self.top_by not in TOP_BY:
            raise TinyinterpError(f"--top-by must be one of {', '.join(TOP_BY)}, got {self.top_by!r}")
        if self.neuron_concurrency < 1 or self.records_chunk < 1:
            raise TinyinterpError("neuron_concurrency and records_chunk must be >= 1")
        if self.max_neurons is not None and self.max_neurons < 1:
            raise TinyinterpError(f"--max-neurons must be >= 1, got {self.max_neurons}")


def select_neurons(n_layers: int, d_mlp: int, cfg: ExplainRunConfig, purity=None) -> list[tuple[int, int]]:
    """The (layer, neuron) pairs to explain, in order."""
    layers = cfg.layers if cfg.layers is not None else list(range(n_layers))
    for layer in layers:
        if not 0 <= layer < n_layers:
            raise TinyinterpError(f"--layers: layer {layer} is out of range (the index has layers 0..{n_layers - 1})")
    if cfg.neurons is None:
        pairs = [(l, n) for l in layers for n in range(d_mlp)]
    else:
        pairs = []
        for layer, n in cfg.neurons:
            if not 0 <= n < d_mlp or (layer is not None and not 0 <= layer < n_layers):
                raise TinyinterpError(f"--neurons: {layer if layer is not None else '*'}:{n} is out of range "
                                      f"({n_layers} layers of {d_mlp} neurons)")
            pairs += [(l, n) for l in layers] if layer is None else [(layer, n)]
        pairs = list(dict.fromkeys(pairs))
    if cfg.top_by == "random":
        order = np.random.default_rng(cfg.seed).permutation(len(pairs))
        pairs = [pairs[i] for i in order]
    elif cfg.top_by == "purity":
        if purity is None:
            raise TinyinterpError("--top-by purity needs purity.json beside the neuron index; run `tinyinterp analyze neurons`")
        tp = np.nan_to_num(purity.type_purity, nan=-1.0)
        pairs = sorted(pairs, key=lambda p: (-tp[p], -purity.n_distinct[p], p))
    return pairs[: cfg.max_neurons] if cfg.max_neurons else pairs


def selected_neurons(index, cfg: ExplainRunConfig) -> list[tuple[int, int]]:
    """:func:`select_neurons` for a loaded index (purity read from beside it when ordering by purity)."""
    purity = None
    if cfg.top_by == "purity":
        from tinyinterp.interp.categories import PURITY_FILE, PurityResult

        if (index.path / PURITY_FILE).is_file():
            purity = PurityResult.load(index.path)
    return select_neurons(index.n_layers, index.d_mlp, cfg, purity)


class ExplainRunner:
    """Runs one explainer over selected neurons of one model, appending to its JSONL."""

    def __init__(self, model, index, cfg: ExplainRunConfig, out_dir: str | Path, client: LLMClient | None = None):
        self.model, self.index, self.cfg, self.client = model, index, cfg, client
        self.out_dir = Path(out_dir)
        if cfg.explainer == "llm":
            if client is None:
                raise TinyinterpError("the llm explainer needs an LLM client (pass --base-url/--model, or use --explainer baseline)")
            self.explainer, self.simulator = LLMExplainer(client), LLMSimulator(client, cfg.simulation)
        else:
            self.explainer, self.simulator = BaselineExplainer(), BaselineSimulator()
        self.slug = explainer_slug(cfg.explainer, client.model if client and cfg.explainer == "llm" else None)
        self.path, self.errors = results_path(self.out_dir, self.slug), errors_path(self.out_dir, self.slug)
        self.builder = RecordBuilder(model, index, cfg.records)
        self.counts = {"done": 0, "flagged": 0, "failed": 0}

    def selected(self) -> list[tuple[int, int]]:
        return selected_neurons(self.index, self.cfg)

    def pending(self) -> list[tuple[int, int]]:
        done = finished_ids(self.path)
        return [p for p in self.selected() if neuron_id(*p) not in done]

    def record_for(self, recs: NeuronRecords, explanation, sims) -> dict:
        scores = score_simulations(recs.heldout, sims)
        flagged = [s for s in sims if s.flagged]
        return {
            "id": neuron_id(recs.layer, recs.neuron), "layer": recs.layer, "neuron": recs.neuron,
            "explainer": self.slug, "model": self.client.model if self.cfg.explainer == "llm" else None,
            "explanation": explanation.text, "status": "flagged" if flagged else "ok",
            **scores.as_dict(),
            "flag_reasons": [s.reason for s in flagged],
            "simulation": sorted({s.method for s in sims}),
            "requests": explanation.requests + sum(s.requests for s in sims),
            "n_heldout_top": len(recs.heldout_top), "n_heldout_random": len(recs.heldout_random),
            "max_activation": recs.max_activation, "records_seed": self.cfg.records.seed, "time": time.time(),
        }

    async def _one(self, recs: NeuronRecords, sink: AppendLog, errors: AppendLog) -> None:
        try:
            explanation = await self.explainer.explain(recs)
            sims = await asyncio.gather(*(self.simulator.simulate(explanation.text, r.tokens) for r in recs.heldout))
        except LLMError as err:
            self.counts["failed"] += 1
            errors.append({"id": neuron_id(recs.layer, recs.neuron), "error": str(err), "time": time.time()})
            log.warning("neuron %d:%d failed: %s", recs.layer, recs.neuron, err)
            return
        record = self.record_for(recs, explanation, sims)
        sink.append(record)
        self.counts["done"] += 1
        self.counts["flagged"] += record["status"] == "flagged"

    async def _run(self, pending: list[tuple[int, int]]) -> None:
        cfg = self.cfg
        queue: asyncio.Queue = asyncio.Queue(maxsize=cfg.neuron_concurrency)
        bar = tqdm(total=len(pending), desc=f"explain ({self.slug})", unit="neuron", disable=not cfg.progress)

        async def produce() -> None:
            try:
                for layer in dict.fromkeys(l for l, _ in pending):
                    neurons = [n for l, n in pending if l == layer]
                    for i in range(0, len(neurons), cfg.records_chunk):
                        chunk = neurons[i: i + cfg.records_chunk]
                        records = await asyncio.to_thread(self.builder.build, layer, chunk)
                        for n in chunk:
                            await queue.put(records[n])
            finally:
                for _ in range(cfg.neuron_concurrency):
                    await queue.put(None)

        async def work(sink: AppendLog, errors: AppendLog) -> None:
            while (recs := await queue.get()) is not None:
                await self._one(recs, sink, errors)
                bar.update(1)

        try:
            with AppendLog(self.path) as sink, AppendLog(self.errors) as errors:
                await asyncio.gather(produce(), *(work(sink, errors) for _ in range(cfg.neuron_concurrency)))
        finally:
            bar.close()
            if self.client is not None:
                await self.client.aclose()

    def run(self) -> dict:
        """Explain every pending neuron; returns a summary (counts, cost, output path)."""
        selected = self.selected()
        done = finished_ids(self.path)
        pending = [p for p in selected if neuron_id(*p) not in done]
        log.info("%d neurons selected, %d already explained, %d to do", len(selected), len(selected) - len(pending), len(pending))
        started = time.time()
        if pending:
            asyncio.run(self._run(pending))
        return {"explainer": self.slug, "selected": len(selected), "skipped": len(selected) - len(pending),
                **self.counts, "seconds": round(time.time() - started, 3), "out": str(self.path),
                "llm": self.client.stats.as_dict() if self.client is not None else None}
