"""Benchmark: neurons explained + scored per second at 16 requests in flight vs. 1, against a slow local server.

The crude-LLM test server (``tests/support/explain_server.py``, in its own process) answers every chat
request after a fixed artificial ``--latency`` (default 0.25 s; a real API takes 1–3 s for these
replies, which re-list ~30 tokens with their activations). The same tiny model, corpus and
neuron index are explained twice in one process with ``tinyinterp.explain.ExplainRunner``
(LLM explainer, logprob simulation, 1 explain + 10 simulation requests per neuron): once with
``--concurrency 1`` and once with ``--concurrency 16`` (neuron concurrency 2 x that). Bar: the
concurrent run must be >= 8x faster in neurons/s, i.e. the runner keeps many requests in flight.
The last line is ``ratio=<neurons/s at 16 / neurons/s at 1>``.

    python bench/explain_throughput.py [--latency 0.25] [--neurons-serial 4] [--neurons-concurrent 48]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.tinyinterp.interp.conftest import make_model, make_stories  # noqa: E402
from tinyinterp.data.corpus import tokenize_corpus  # noqa: E402
from tinyinterp.explain import ExplainRunConfig, ExplainRunner  # noqa: E402
from tinyinterp.interp import NeuronIndexConfig, build_neuron_index  # noqa: E402
from tinyinterp.llm import LLMClient, LLMConfig  # noqa: E402
from tinyinterp.data.tokenizer import Tokenizer  # noqa: E402


def throughput(model, index, url: str, concurrency: int, n_neurons: int, out: Path) -> tuple[float, dict]:
    client = LLMClient(LLMConfig(base_url=url, model="gpt-4o-mini", max_concurrency=concurrency, api_key="bench"))
    cfg = ExplainRunConfig(explainer="llm", max_neurons=n_neurons, neuron_concurrency=2 * concurrency)
    started = time.perf_counter()
    summary = ExplainRunner(model, index, cfg, out, client).run()
    seconds = time.perf_counter() - started
    assert summary["done"] == n_neurons and summary["failed"] == 0, summary
    return n_neurons / seconds, summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--latency", type=float, default=0.25, help="seconds the server waits before each reply")
    ap.add_argument("--neurons-serial", type=int, default=4, help="neurons explained at concurrency 1")
    ap.add_argument("--neurons-concurrent", type=int, default=48, help="neurons explained at concurrency 16")
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tok = Tokenizer.train_bpe(make_stories(200, seed=1), vocab_size=400, progress=False)
        corpus = tokenize_corpus(make_stories(200, seed=3), tok, tmp / "corpus", progress=False)
        model = make_model(tok)
        index = build_neuron_index(model, corpus, tmp / "index", NeuronIndexConfig(k=20, seq_len=64), progress=False)
        # The server runs in its own process, like a remote API: its CPU time is not ours.
        server = subprocess.Popen([sys.executable, "-m", "tests.support.explain_server", "--latency", str(args.latency)],
                                  cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        try:
            url = server.stdout.readline().strip()
            serial, s1 = throughput(model, index, url, 1, args.neurons_serial, tmp / "c1")
            parallel, s16 = throughput(model, index, url, args.concurrency, args.neurons_concurrent, tmp / "c16")
        finally:
            server.stdin.close()
            server.wait(timeout=10)
    print(json.dumps({"latency_s": args.latency, "neurons_per_s_c1": round(serial, 3),
                      f"neurons_per_s_c{args.concurrency}": round(parallel, 3),
                      "requests_c1": s1["llm"]["requests"], f"requests_c{args.concurrency}": s16["llm"]["requests"],
                      "bar": 8.0}))
    print(f"ratio={parallel / serial:.2f}")


if __name__ == "__main__":
    main()
