"""Benchmark: neuron-index pass vs. a plain forward, and peak memory vs. corpus size.

A ``tinystories-1m``-shaped random model (8 layers x 256 neurons, 10,001-token vocabulary) and a
synthetic corpus of random-token documents (100-300 tokens each, written as a real corpus folder).

The index pass measured is the full default one: top-k, running stats, the activation histogram with
one example per bin (quantile examples), the most negative examples, progress saves, and the logit
effects computed at the end (issue 11).

1. Throughput, same process, same batches: tokens/s of ``build_neuron_index`` (hooks on every
   ``mlp.hook_post``, top-k merge, running stats, histogram + per-bin samples + bottom-k, progress
   saves, logit effects) / tokens/s of a plain
   ``model(tokens)`` with no hooks. Bar: >= 0.7. Also reported (not gated): the index pass without
   its early stop after the last MLP, to show what the hooks cost on their own.
2. Feature index (issue 19), same process, same batches: tokens/s of ``build_feature_index`` for a random
   TopK transcoder of the LAST block's MLP (``blocks.7.ln2.hook_normalized``, 2048 features = as many units
   as the model has neurons, k = 32; the last block, so the early stop saves almost nothing) / tokens/s of
   the plain forward. Bar: >= 0.6.
3. Peak RSS of an index build on the 1x corpus and on a 4x corpus, each in a fresh subprocess
   (``resource.getrusage(RUSAGE_SELF).ru_maxrss`` in the child). Bar: rss(4x) <= 1.1 x rss(1x),
   reported as rss(1x) / rss(4x) (bar >= 0.909).

The last line is ``ratio=<smallest of the three ratios>`` (neuron index / forward, rss(1x) / rss(4x), feature
index / forward); each is also printed with its own bar.

    python bench/neuron_index.py [--tokens 300000] [--threads 1] [--clock cpu]
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tinyinterp.data.corpus import TokenizedCorpus  # noqa: E402
from tinyinterp.interp.inputs import document_windows, iter_batches  # noqa: E402
from tinyinterp.dictionaries import DictionaryConfig, SparseCoder, save_dictionary, transcoder_hooks  # noqa: E402
from tinyinterp.interp.feature_index import build_feature_index  # noqa: E402
from tinyinterp.interp.neuron_index import NeuronIndexConfig, build_neuron_index  # noqa: E402
from tinyinterp.models.transformer import HookedTransformer  # noqa: E402
from tinyinterp.models.zoo import preset_config  # noqa: E402

VOCAB = 10_001
CLOCK = time.perf_counter  # --clock cpu: time.process_time, the CPU time of this process (steadier on a busy machine)


def make_corpus(path: Path, n_tokens: int, seed: int = 0) -> TokenizedCorpus:
    """A corpus folder (tokens.bin, doc_offsets.npy, meta.json) of random documents, written in chunks."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    lengths = []
    with open(path / "tokens.bin", "wb") as f:
        total = 0
        while total < n_tokens:
            n = int(min(rng.integers(100, 301), n_tokens - total))
            rng.integers(0, VOCAB - 1, n, dtype=np.uint16).tofile(f)
            lengths.append(n)
            total += n
    np.save(path / "doc_offsets.npy", np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))
    meta = {"format_version": 1, "dtype": "uint16", "n_tokens": total, "n_docs": len(lengths), "vocab_size": VOCAB,
            "eot_id": VOCAB - 1, "tokenizer_fingerprint": "synthetic", "source": "bench"}
    (path / "meta.json").write_text(json.dumps(meta))
    return TokenizedCorpus.open(path)


def make_model() -> HookedTransformer:
    torch.manual_seed(0)
    return HookedTransformer(preset_config("tinystories-1m", d_vocab=VOCAB)).eval()


@torch.no_grad()
def plain_forward_seconds(model, corpus, cfg: NeuronIndexConfig) -> float:
    windows = document_windows(corpus, min(cfg.seq_len or 256, model.cfg.n_ctx))
    start = CLOCK()
    for tokens, _, _ in iter_batches(corpus, windows, cfg.batch_size):
        model(tokens)
    return CLOCK() - start


def index_seconds(model, corpus, cfg: NeuronIndexConfig) -> float:
    with tempfile.TemporaryDirectory() as out:
        start = CLOCK()
        build_neuron_index(model, corpus, out, cfg, progress=False)
        return CLOCK() - start


def make_dictionary(model, path: Path, d_sae: int = 2048, k: int = 32) -> Path:
    """A random TopK transcoder of the last block's MLP, saved as a dictionary folder."""
    layer = model.cfg.n_layers - 1
    d = model.cfg.d_model
    coder = SparseCoder(DictionaryConfig("transcoder", *transcoder_hooks(layer), d, d, d_sae, k))
    coder.reset_parameters(torch.Generator().manual_seed(0))
    return save_dictionary(coder, path)


def feature_index_seconds(model, corpus, dict_dir: Path, cfg: NeuronIndexConfig) -> float:
    with tempfile.TemporaryDirectory() as out:
        start = CLOCK()
        build_feature_index(model, corpus, dict_dir, cfg, out_dir=out, progress=False)
        return CLOCK() - start


def child_peak_rss(corpus_dir: str, threads: int) -> None:
    """Run in a fresh interpreter: build an index over ``corpus_dir`` and print the peak RSS in KiB."""
    torch.set_num_threads(threads)
    model, corpus = make_model(), TokenizedCorpus.open(corpus_dir)
    with tempfile.TemporaryDirectory() as out:
        build_neuron_index(model, corpus, out, NeuronIndexConfig(), progress=False)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=100_000, help="tokens in the 1x corpus (default 100k)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: stable timings on shared CPUs)")
    parser.add_argument("--repeats", type=int, default=2, help="timing repeats; the best is kept (default 2)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall: elapsed time (default); cpu: this process's CPU time, for a machine shared with other jobs")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.getLogger("tinyinterp").setLevel(logging.ERROR)  # the synthetic corpus has no tokenizer to check
    if args.child:
        child_peak_rss(args.child, args.threads)
        return 0
    torch.set_num_threads(args.threads)
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    cfg = NeuronIndexConfig()
    with tempfile.TemporaryDirectory() as tmp:
        c1 = make_corpus(Path(tmp) / "x1", args.tokens)
        c4 = make_corpus(Path(tmp) / "x4", 4 * args.tokens, seed=1)
        model = make_model()
        plain_forward_seconds(model, c1, NeuronIndexConfig(max_docs=50))  # warm-up
        fwd = min(plain_forward_seconds(model, c1, cfg) for _ in range(args.repeats))
        idx = min(index_seconds(model, c1, cfg) for _ in range(args.repeats))
        idx_full = index_seconds(model, c1, NeuronIndexConfig(stop_early=False))
        dict_dir = make_dictionary(model, Path(tmp) / "dict")
        feat = min(feature_index_seconds(model, c1, dict_dir, cfg) for _ in range(args.repeats))
        n = c1.n_tokens
        print(f"corpus 1x: {n} tokens in {c1.n_docs} docs; model tinystories-1m shape; threads={args.threads}; clock={args.clock}; index with "
              f"histogram + per-bin samples, bottom-{cfg.k_negative}, logit effects top/bottom-{cfg.n_logits}")
        print(f"plain forward        : {n / fwd:10.0f} tok/s")
        print(f"index pass           : {n / idx:10.0f} tok/s  ratio {fwd / idx:.3f} (bar >= 0.7)")
        print(f"index, no early stop : {n / idx_full:10.0f} tok/s  ratio {fwd / idx_full:.3f} (not gated)")
        print(f"feature index pass   : {n / feat:10.0f} tok/s  ratio {fwd / feat:.3f} (bar >= 0.6; transcoder of block "
              f"{model.cfg.n_layers - 1}, 2048 features, k=32)")
        rss = {}
        for name, c in (("1x", c1), ("4x", c4)):
            out = subprocess.run([sys.executable, __file__, "--child", str(c.path), "--threads", str(args.threads)],
                                 capture_output=True, text=True, check=True)
            rss[name] = int(out.stdout.strip().splitlines()[-1])
            print(f"peak RSS {name} ({c.n_tokens} tokens): {rss[name] / 1024:.1f} MiB")
        mem_ratio = rss["1x"] / rss["4x"]
        print(f"rss(4x) / rss(1x) = {rss['4x'] / rss['1x']:.3f} (bar <= 1.1)")
        throughput = fwd / idx
        print(f"ratio={min(throughput, mem_ratio, fwd / feat):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
