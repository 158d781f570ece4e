"""The eai-sparsify half of bench/dictionary_train.py: runs in a venv of its own (never the project's).

Trains one TopK SAE with ``sparsify.Trainer`` on a Hugging Face export of the benchmark model, over the
token windows the benchmark wrote (same order as our trainer reads them), times ``Trainer.fit()`` and
prints one JSON line: ``{"seconds": wall, "cpu_seconds": process CPU, "tokens": trained, "steps": n}``.
Imports only sparsify, transformers, datasets and torch (no tinyinterp).

    /path/to/sparsify-venv/bin/python bench/sparsify_side.py SPEC.json
"""

from __future__ import annotations

import json
import os
import sys
import time


def held_out(model, sae_dir: str, hookpoint: str, windows) -> tuple[float, float]:
    """FVU and dead fraction of the saved SAE as sparsify itself computes them, on the HF model's own outputs
    (a cross-check of the benchmark's scoring through our reader and our model)."""
    import torch
    from sparsify import SparseCoder

    sae = SparseCoder.load_from_disk(sae_dir)
    module = model.base_model.get_submodule(hookpoint)
    rows = []
    handle = module.register_forward_hook(lambda _m, _i, out: rows.append(out.flatten(0, 1)))
    with torch.no_grad():
        for i in range(0, len(windows), 16):
            model(torch.as_tensor(windows[i: i + 16]))
    handle.remove()
    x = torch.cat(rows)
    with torch.no_grad():
        out = sae(x)
    fired = torch.zeros(sae.num_latents, dtype=torch.bool)
    fired[out.latent_indices[out.latent_acts > 0]] = True
    return float(out.fvu), 1.0 - float(fired.float().mean())


def main(argv: list[str]) -> int:
    spec = json.loads(open(argv[0], encoding="utf-8").read())
    os.environ.setdefault("WANDB_MODE", "disabled")
    import numpy as np
    import torch

    torch.set_num_threads(spec["threads"])
    from datasets import Dataset
    from sparsify import SaeConfig, Trainer, TrainConfig
    from transformers import AutoModelForCausalLM

    tokens = np.load(spec["tokens"])
    dataset = Dataset.from_dict({"input_ids": tokens.tolist()}).with_format("torch")
    model = AutoModelForCausalLM.from_pretrained(spec["hf_dir"], dtype=torch.float32).eval()
    cfg = TrainConfig(
        SaeConfig(num_latents=spec["width"], k=spec["k"]),
        batch_size=spec["batch_seqs"], hookpoints=[spec["hookpoint"]], optimizer=spec["optimizer"],
        auxk_alpha=spec["auxk_alpha"], dead_feature_threshold=spec["dead_feature_threshold"],
        save_dir=spec["save_dir"], run_name="bench", log_to_wandb=False, save_every=10**9,
    )
    trainer = Trainer(cfg, dataset, model)
    wall, cpu = time.perf_counter(), time.process_time()
    trainer.fit()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    steps = len(dataset) // spec["batch_seqs"]
    sae_dir = os.path.join(spec["save_dir"], "bench", spec["hookpoint"])
    fvu, dead = held_out(model, sae_dir, spec["hookpoint"], np.load(spec["eval_tokens"]))
    print(json.dumps({"seconds": wall, "cpu_seconds": cpu, "tokens": steps * spec["batch_seqs"] * tokens.shape[1],
                      "steps": steps, "sae_dir": sae_dir, "own_fvu": fvu, "own_dead_fraction": dead}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
