"""Analysis throughput: official checkpoints imported natively vs. booted in TransformerBridge (same run).

    OMP_NUM_THREADS=1 python bench/analysis_backends.py            # CPU, TinyStories-1M and -33M shapes
    python bench/analysis_backends.py --device cuda --batch 16 --seq 512

For each official configuration (``config.json`` of ``roneneldan/TinyStories-1M`` and ``-33M``: GPT-Neo,
alternating global/local attention, vocabulary 50,257) a random-init ``GPTNeoForCausalLM`` is saved to a
temporary folder, then loaded twice from it: ``tinyinterp.load(dir)`` (our HookedTransformer, weights
processed as TL's ``from_pretrained`` does) and ``tinyinterp.load(dir, backend="bridge")``
(``TransformerBridge`` in compatibility mode, which applies the same processing). Identical weights are
checked through equal log-probabilities. Timed: ``run_with_cache`` caching every ``hook_pattern`` and
``mlp.hook_post`` on a batch of random tokens, alternating the two backends (native, bridge, bridge,
native, …) so drifting machine load hits both alike; the median of the repeats counts. On the CPU the
clock is the process's CPU time (with one thread, the work done; wall time on a shared machine mostly
measures the neighbours), on CUDA the wall clock.

Two call styles are timed: ``return_type=None`` (activations only, what a neuron index or a head
analysis needs: our model skips the d_model × 50,257 unembedding, the bridge's HF forward computes it)
and ``return_type="logits"`` (both compute the same unembedding, which dominates at d_model 64).
Prints tokens/s per backend and style; the last line is ``ratio=<smallest native/bridge ratio>`` over
the configurations for ``return_type=None`` (the logits ratio is printed on the line above it).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tinyinterp  # noqa: E402
from tinyinterp.data.paths import data_dir  # noqa: E402

# The official configurations (their config.json), as GPTNeoConfig keyword arguments.
OFFICIAL = {
    "TinyStories-1M": dict(hidden_size=64, num_layers=8, attention_types=[[["global", "local"], 4]]),
    "TinyStories-33M": dict(hidden_size=768, num_layers=4, attention_types=[[["global", "local"], 2]]),
}
COMMON = dict(
    num_heads=16, window_size=256, max_position_embeddings=2048, vocab_size=50257, intermediate_size=None,
    activation_function="gelu_new", layer_norm_epsilon=1e-5, bos_token_id=50256, eos_token_id=50256,
)


def cache_filter(name: str) -> bool:
    return name.endswith("hook_pattern") or name.endswith("mlp.hook_post")


def save_random_checkpoint(folder: Path, name: str, seed: int = 0) -> Path:
    from transformers import GPTNeoConfig, GPTNeoForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(seed)
    GPTNeoForCausalLM(GPTNeoConfig(**OFFICIAL[name], **COMMON)).save_pretrained(folder)
    tok = data_dir() / "tokenizers" / "gpt2" / "tokenizer.json"
    PreTrainedTokenizerFast(tokenizer_file=str(tok), eos_token="<|endoftext|>").save_pretrained(folder)
    return folder


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_cache(model, tokens: torch.Tensor, device: torch.device, return_type: str | None) -> float:
    clock = time.process_time if device.type == "cpu" else time.perf_counter
    sync(device)
    t = clock()
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=cache_filter, return_type=return_type)
    sync(device)
    elapsed = clock() - t
    assert len(cache.keys()) > 0
    return elapsed


def bench_one(name: str, args, device: torch.device) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = save_random_checkpoint(Path(tmp) / name, name)
        native = tinyinterp.load(folder, device=device).process_weights()
        bridge = tinyinterp.load(folder, device=device, backend="bridge")
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, COMMON["vocab_size"], (args.batch, args.seq), generator=gen).to(device)
    with torch.no_grad():  # identical weights: same log-probabilities
        diff = (native(tokens[:1]).log_softmax(-1) - bridge(tokens[:1]).log_softmax(-1)).abs().max().item()
    assert diff < 1e-4, f"{name}: backends disagree by {diff:.2e}"
    ratios = {}
    for return_type in (None, "logits"):
        for model in (native, bridge):  # warm-up
            time_cache(model, tokens, device, return_type)
        times: dict[str, list[float]] = {"native": [], "bridge": []}
        for i in range(args.repeats):
            order = ("native", "bridge") if i % 2 == 0 else ("bridge", "native")
            for which in order:
                times[which].append(time_cache(native if which == "native" else bridge, tokens, device, return_type))
        n_tokens = args.batch * args.seq
        rate = {k: n_tokens / statistics.median(v) for k, v in times.items()}
        ratios[str(return_type)] = rate["native"] / rate["bridge"]
        print(f"{name} return_type={return_type}: native {rate['native']:,.0f} tok/s, bridge {rate['bridge']:,.0f} "
              f"tok/s, native/bridge {ratios[str(return_type)]:.2f} (max |dlogprob| {diff:.1e})", flush=True)
    return ratios


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=list(OFFICIAL), choices=list(OFFICIAL))
    p.add_argument("--batch", type=int, default=2, help="sequences per run_with_cache call (default 2)")
    p.add_argument("--seq", type=int, default=256, help="tokens per sequence (default 256)")
    p.add_argument("--repeats", type=int, default=4, help="timed calls per backend and call style (default 4)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    device = torch.device(args.device)
    print(f"run_with_cache(hook_pattern + mlp.hook_post), batch {args.batch} x {args.seq} tokens, "
          f"{torch.get_num_threads()} threads, device {device}", flush=True)
    results = [bench_one(name, args, device) for name in args.configs]
    print(f"logits_ratio={min(r['logits'] for r in results):.2f}")
    print(f"ratio={min(r['None'] for r in results):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
