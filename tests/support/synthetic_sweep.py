"""A synthetic scaling sweep on disk (summary + metrics, no weights) whose true scaling law is known.

Loss follows the Chinchilla form ``L(N, D) = E + A / N^alpha + B / D^beta`` with compute ``C = 6 N D``,
so the compute-optimal size is ``N_opt ∝ C^(beta / (alpha + beta))``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

E, A, ALPHA, B, BETA = 1.7, 60.0, 0.35, 90.0, 0.35
TRAIN_TOKENS = 400_000


def true_loss(n: float, d: float) -> float:
    return E + A / n**ALPHA + B / d**BETA


def make_sweep(out: Path, widths=(16, 32, 64, 128, 256, 512, 1024), budgets=(1e11, 1e12, 1e13), evals: int = 8,
               noise: float = 0.0, seed: int = 0) -> Path:
    """Write ``out/sweep_summary.json`` and one ``metrics.jsonl`` per run; returns ``out``."""
    rng = np.random.default_rng(seed)
    runs = []
    for budget in budgets:
        for d_model in widths:
            n = 12 * 2 * d_model**2  # n_matmul of a 2-layer body, no unembedding
            name = f"d{d_model}-l2-h4-lr0.003-s0-c{budget:g}".replace("+", "")
            tokens_total = budget / (6 * n)
            run = out / name
            run.mkdir(parents=True)
            records = []
            for k in range(1, evals + 1):
                tokens = int(tokens_total * k / evals)
                loss = true_loss(n, tokens) + noise * rng.standard_normal()
                records.append({"step": k, "tokens": tokens, "flops": 6 * n * tokens, "train_loss": loss, "val_loss": loss})
            (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
            runs.append({"name": name, "d_model": d_model, "n_layers": 2, "n_heads": 4, "lr": 3e-3, "seed": 0,
                         "budget_kind": "flops", "budget": budget, "flops_per_token": 6 * n, "n_params": n + 1000,
                         "n_params_non_embedding": n, "n_matmul": n, "steps": evals, "tokens": records[-1]["tokens"],
                         "final_val_loss": records[-1]["val_loss"], "flops": records[-1]["flops"],
                         "train_tokens": TRAIN_TOKENS, "epochs": records[-1]["tokens"] / TRAIN_TOKENS})
    (out / "sweep_summary.json").write_text(json.dumps({"kind": "scaling", "runs": runs, "pending": [], "best": None}))
    return out
