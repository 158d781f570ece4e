"""Estimate the tokens and USD of explaining and scoring neurons, before spending anything (``--dry-run``).

Prompts are built for real from a sample of neurons' records and counted with the run's tokenizer
(a GPT-2-style BPE: within ~10–20% of OpenAI's tokenizers on English). Per neuron: one explain
request (reply ~30 tokens) and one simulation per held-out record, whose reply re-lists every token
with its activation (logprobs mode) or holds one number per token (JSON mode); the average over the
sample is multiplied by the number of neurons. Re-asks and retries are not in the estimate.
Without a run (``--dry-run`` on a preset name) records are synthetic: windows of real text of the
configured shape with one active token, which is what the prompt length depends on.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

from tinyinterp.explain.prompts import explain_messages, format_records, simulate_json_messages, simulate_messages
from tinyinterp.explain.records import ActivationRecord, NeuronRecords, RecordConfig
from tinyinterp.llm import estimate_cost

MESSAGE_OVERHEAD_TOKENS = 4  # chat format tokens per message
EXPLANATION_REPLY_TOKENS = 30


@dataclass
class CostEstimate:
    model: str
    n_neurons: int
    requests: int
    prompt_tokens: int
    completion_tokens: int
    usd: float
    usd_batch: float

    def format(self) -> str:
        return (f"estimate for {self.n_neurons} neurons with {self.model}: {self.requests:,} requests, "
                f"{self.prompt_tokens:,} prompt + {self.completion_tokens:,} completion tokens, "
                f"~${self.usd:,.2f} (Batch API ~${self.usd_batch:,.2f})")

    def as_dict(self) -> dict:
        return asdict(self)


def _count(messages: list[dict], count_tokens) -> int:
    return sum(count_tokens(m["content"]) + MESSAGE_OVERHEAD_TOKENS for m in messages)


def estimate(samples: list[NeuronRecords], n_neurons: int, model: str, count_tokens, simulation: str = "auto",
             prices=None) -> CostEstimate:
    """Scale the token counts of ``samples`` up to ``n_neurons``."""
    if not samples:
        return CostEstimate(model, n_neurons, 0, 0, 0, 0.0, 0.0)
    prompt = completion = requests = 0
    for recs in samples:
        prompt += _count(explain_messages([(r.tokens, r.activations) for r in recs.explain], recs.max_activation),
                         count_tokens)
        completion += EXPLANATION_REPLY_TOKENS
        requests += 1
        for r in recs.heldout:
            if simulation == "json":
                prompt += _count(simulate_json_messages("x" * 60, r.tokens), count_tokens)
                completion += count_tokens(json.dumps({"activations": [0] * len(r.tokens)}))
            else:
                prompt += _count(simulate_messages("x" * 60, r.tokens), count_tokens)
                completion += count_tokens(format_records([(r.tokens, [0] * len(r.tokens))]))
            requests += 1
    scale = n_neurons / len(samples)
    pt, ct = int(prompt * scale), int(completion * scale)
    return CostEstimate(model, n_neurons, int(requests * scale), pt, ct, estimate_cost(model, pt, ct, prices),
                        estimate_cost(model, pt, ct, prices, batch=True))


def synthetic_records(token_ids: np.ndarray, token_str, cfg: RecordConfig, n: int = 8, seed: int = 0) -> list[NeuronRecords]:
    """Records of the configured shape cut from a token stream (activation 1 on the centre token only)."""
    rng = np.random.default_rng(seed)
    width = cfg.context_left + cfg.context_right + 1
    out = []
    for i in range(n):
        def rec(kind: str) -> ActivationRecord:
            start = int(rng.integers(0, max(1, len(token_ids) - width)))
            ids = [int(t) for t in token_ids[start: start + width]]
            acts = [0.0] * len(ids)
            acts[min(cfg.context_left, len(ids) - 1)] = 1.0
            return ActivationRecord([token_str(t) for t in ids], acts, kind, start, ids)
        out.append(NeuronRecords(0, i, 1.0, [rec("top") for _ in range(cfg.n_explain)],
                                 [rec("top") for _ in range(cfg.n_heldout_top)],
                                 [rec("random") for _ in range(cfg.n_heldout_random)]))
    return out
