"""KV-cached vs. uncached generation of 256 new tokens, same model, same run.

    python bench/generate.py [--preset tinystories-1m] [--new-tokens 256] [--batch 4]

Greedy decoding so both paths produce the same tokens (checked). Prints tokens/s of each and
their ratio; the last line is ``ratio=<cached speed / uncached speed>`` (bar: >= 3).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from tinyinterp.models.generation import SamplingConfig, generate_tokens
from tinyinterp.models.transformer import HookedTransformer
from tinyinterp.models.zoo import preset_config


def time_generation(model, prompts, cfg) -> tuple[float, list[list[int]]]:
    start = time.perf_counter()
    out = generate_tokens(model, prompts, cfg)
    return time.perf_counter() - start, out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tinystories-1m")
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = HookedTransformer(preset_config(args.preset, d_vocab=10_001)).eval()
    prompts = torch.randint(0, 10_001, (args.batch, args.prompt_len)).tolist()
    cached_cfg = SamplingConfig(max_new_tokens=args.new_tokens, temperature=0, use_kv_cache=True)
    plain_cfg = SamplingConfig(max_new_tokens=args.new_tokens, temperature=0, use_kv_cache=False)

    time_generation(model, prompts, SamplingConfig(max_new_tokens=8, temperature=0))  # warm-up
    cached_times, plain_times = [], []
    for _ in range(args.repeats):  # interleave so background load hits both alike
        t, cached_out = time_generation(model, prompts, cached_cfg)
        cached_times.append(t)
        t, plain_out = time_generation(model, prompts, plain_cfg)
        plain_times.append(t)
        if cached_out != plain_out:
            print("cached and uncached generation disagree", file=sys.stderr)
            return 1
    n_tokens = args.batch * args.new_tokens
    cached, plain = statistics.median(cached_times), statistics.median(plain_times)
    print(f"model {args.preset}, batch {args.batch}, prompt {args.prompt_len}, {args.new_tokens} new tokens, "
          f"threads {torch.get_num_threads()}")
    print(f"kv cache : {n_tokens / cached:8.1f} tokens/s ({cached:.2f} s)")
    print(f"no cache : {n_tokens / plain:8.1f} tokens/s ({plain:.2f} s)")
    print(f"ratio={plain / cached:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
