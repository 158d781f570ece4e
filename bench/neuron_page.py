"""Benchmark: a neuron page's top examples, per-example full forwards vs. the one batched early-stopping pass.

A neuron page shows the top-20 examples of a neuron, each with the neuron's activation on every token of
its context, recomputed on the window the neuron index ran (``seq_len`` tokens of one document). Before
issue 16 that was one unbatched forward per example through EVERY block (with GPT-2 XL, hooking layer 0
still ran all 48 layers); now :meth:`NeuronIndex.top_examples` runs the distinct windows once, batched,
through :func:`tinyinterp.interp.activations.iter_activations`, which ends the forward right after the
requested hook.

Two random-init models, same process, same examples, interleaved repeats (the best kept):

- ``gpt2-xl-12l``: GPT-2 XL's width (d_model 1600, 25 heads, d_mlp 6400, vocabulary 50,257), 12 layers
  instead of 48 so it fits here (the real model's speed-up is larger: it has 4x more layers to skip);
- ``tinystories-33m``: the preset of ``tinyinterp.models.zoo`` (768 wide, 4 layers).

The examples are the real top-20 of one layer-0 neuron over a synthetic corpus of random-token documents
(found with the new pass: a layer-0 pass over the corpus, not timed), each computed on its full context
window (the ``seq_len`` window the index ran) and shown with ``--context`` tokens each side (default 32,
the most the page offers). The baseline is the old per-example path, reimplemented here: one
``run_with_hooks`` of the full window per example, ``return_type=None``, no early stop. The new path runs
each distinct window once, up to its last shown token (causal attention: identical activations). Both
must give the same activations (checked, atol 1e-4). Also reported, not gated: the new path when the
page shows every example's whole window (``context`` = ``seq_len``: nothing to cut, only batching and the
early stop are left).

The last line is ``ratio=<smallest speed-up over the models>`` (bar: >= 5).

    python bench/neuron_page.py [--models gpt2-xl-12l tinystories-33m] [--threads 1] [--clock cpu]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tinyinterp.models.config import ModelConfig  # noqa: E402
from tinyinterp.data.corpus import TokenizedCorpus  # noqa: E402
from tinyinterp.interp.activations import iter_activations  # noqa: E402
from tinyinterp.interp.inputs import MLP_HOOK, document_windows  # noqa: E402
from tinyinterp.interp.neuron_index import NeuronIndex  # noqa: E402
from tinyinterp.models.transformer import HookedTransformer  # noqa: E402
from tinyinterp.models.zoo import PRESETS, arch_fields, preset_config  # noqa: E402

XL_12L = "gpt2-xl-12l"
LAYER = 0
CLOCK = time.perf_counter  # --clock cpu: time.process_time, the CPU time of this process (steadier on a busy machine)


def make_model(name: str, vocab: int) -> HookedTransformer:
    torch.manual_seed(0)
    if name == XL_12L:
        cfg = ModelConfig(d_model=1600, n_layers=12, n_heads=25, d_mlp=6400, d_vocab=vocab, n_ctx=1024,
                          **arch_fields("gpt2", 12))
    elif name in PRESETS:
        cfg = preset_config(name, d_vocab=vocab)
    else:
        raise SystemExit(f"error: --models: unknown model {name!r}; choose {XL_12L} or a preset ({', '.join(PRESETS)})")
    return HookedTransformer(cfg).eval()


def make_corpus(path: Path, n_docs: int, doc_len: tuple[int, int], vocab: int, seed: int = 0) -> TokenizedCorpus:
    """A corpus folder of ``n_docs`` random-token documents (lengths uniform in ``doc_len``)."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    lengths = rng.integers(doc_len[0], doc_len[1] + 1, n_docs)
    dtype = "uint16" if vocab <= 1 << 16 else "uint32"
    rng.integers(0, vocab - 1, int(lengths.sum())).astype(dtype).tofile(path / "tokens.bin")
    np.save(path / "doc_offsets.npy", np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))
    meta = {"format_version": 1, "dtype": dtype, "n_tokens": int(lengths.sum()), "n_docs": n_docs, "vocab_size": vocab,
            "eot_id": vocab - 1, "tokenizer_fingerprint": "synthetic", "source": "bench"}
    (path / "meta.json").write_text(json.dumps(meta))
    return TokenizedCorpus.open(path)


def top_index(model, corpus, neuron: int, k: int, seq_len: int, out: Path) -> NeuronIndex:
    """An in-memory neuron index holding the real top-``k`` of ``neuron`` in layer 0 (other neurons empty)."""
    name = MLP_HOOK.format(layer=LAYER)
    values, positions = [], []
    for batch in iter_activations(model, corpus, document_windows(corpus, seq_len), [name],
                                  reduce=lambda _, acts, b: b.real_rows(acts[..., neuron])):
        values.append(batch.acts[name])
        positions.append(batch.real_positions)
    best, idx = torch.topk(torch.cat(values), k)
    L, N = model.cfg.n_layers, model.cfg.d_mlp
    tensors = {"top_values": torch.full((L, N, k), float("-inf")), "top_positions": torch.full((L, N, k), -1)}
    tensors["top_values"][LAYER, neuron] = best
    tensors["top_positions"][LAYER, neuron] = torch.cat(positions)[idx]
    meta = {"n_layers": L, "d_mlp": N, "k": k, "config": {"seq_len": seq_len}}
    return NeuronIndex(out, meta, tensors, corpus=corpus, tokenizer=_TokenIds())


class _TokenIds:
    """Token strings for a corpus without a tokenizer ("<id>"), as cheap as a real tokenizer's lookup."""

    def token_str(self, token_id: int) -> str:
        return f"<{token_id}>"


@torch.no_grad()
def per_example_examples(index: NeuronIndex, model, neuron: int, k: int, context: int):
    """The old path: the examples, then one full forward of each example's window (no batching, no early stop)."""
    examples = index.top_examples(LAYER, neuron, k=k, context=context)  # centres only, no model
    offsets = np.asarray(index.corpus.doc_offsets)
    seq_len = int(index.meta["config"]["seq_len"])
    for ex in examples:
        doc_start = int(offsets[ex.doc])
        win_start = doc_start + (ex.pos // seq_len) * seq_len
        win_end = min(win_start + seq_len, int(offsets[ex.doc + 1]))
        tokens = torch.as_tensor(np.asarray(index.corpus.tokens[win_start:win_end], dtype=np.int64))[None]
        got = {}

        def grab(acts, hook):
            got["a"] = acts[0, :, neuron].float().cpu()

        model.run_with_hooks(tokens, fwd_hooks=[(MLP_HOOK.format(layer=LAYER), grab)], return_type=None)
        lo = doc_start + ex.pos - ex.center
        for i in range(len(ex.tokens)):
            g = lo + i - win_start
            if 0 <= g < got["a"].shape[0]:
                ex.activations[i] = float(got["a"][g])
    return examples


def timed(fn):
    start = CLOCK()
    out = fn()
    return CLOCK() - start, out


def bench_model(name: str, args, tmp: Path) -> float:
    model = make_model(name, args.vocab)
    corpus = make_corpus(tmp / name, args.docs, (args.doc_min, args.doc_max), args.vocab)
    seq_len = min(args.seq_len, model.cfg.n_ctx)
    context = min(args.context, seq_len)
    neuron = args.neuron % model.cfg.d_mlp
    index = top_index(model, corpus, neuron, args.k, seq_len, tmp / f"{name}-index")
    times = {"old": [], "new": [], "whole": []}
    for _ in range(args.repeats):  # interleaved, so background load hits all alike
        t, old = timed(lambda: per_example_examples(index, model, neuron, args.k, context))
        times["old"].append(t)
        t, new = timed(lambda: index.top_examples(LAYER, neuron, k=args.k, context=context, model=model))
        times["new"].append(t)
        t, whole = timed(lambda: index.top_examples(LAYER, neuron, k=args.k, context=seq_len, model=model))
        times["whole"].append(t)
    whole_old = per_example_examples(index, model, neuron, args.k, seq_len)  # the same forwards; not timed
    for got_exs, want_exs in ((new, old), (whole, whole_old)):
        got, want = (np.array([a for ex in exs for a in ex.activations]) for exs in (got_exs, want_exs))
        if got.shape != want.shape or not np.allclose(got, want, atol=1e-4, equal_nan=True):
            raise SystemExit(f"error: {name}: the batched pass and the per-example path disagree")
    starts = {(ex.doc, ex.pos // seq_len) for ex in new}
    old_s, new_s, whole_s = (min(times[key]) for key in ("old", "new", "whole"))
    c = model.cfg
    print(f"{name:16s} d_model {c.d_model}, {c.n_layers} layers, d_mlp {c.d_mlp}: top-{len(new)} of neuron "
          f"{LAYER}:{neuron} in {len(starts)} windows of <= {seq_len} tokens")
    print(f"{'':16s} per-example full forwards {old_s:7.2f} s | batched pass, context {context}: {new_s:6.2f} s, "
          f"speed-up {old_s / new_s:6.2f} | whole windows shown: {whole_s:6.2f} s, speed-up {old_s / whole_s:6.2f} (not gated)")
    return old_s / new_s


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=[XL_12L, "tinystories-33m"],
                        help=f"{XL_12L} and/or zoo presets (default: {XL_12L} tinystories-33m)")
    parser.add_argument("--vocab", type=int, default=50_257, help="vocabulary size (default 50,257: GPT-2's)")
    parser.add_argument("--docs", type=int, default=48, help="documents in the synthetic corpus (default 48)")
    parser.add_argument("--doc-min", type=int, default=200, help="shortest document in tokens (default 200)")
    parser.add_argument("--doc-max", type=int, default=600, help="longest document in tokens (default 600)")
    parser.add_argument("--seq-len", type=int, default=256, help="the index's window length (default 256, its default)")
    parser.add_argument("--context", type=int, default=32, help="context tokens each side on the page (default 32, the page's most)")
    parser.add_argument("--k", type=int, default=20, help="examples on the page (default 20)")
    parser.add_argument("--neuron", type=int, default=17, help="the layer-0 neuron (default 17)")
    parser.add_argument("--repeats", type=int, default=1, help="timing repeats; the best is kept (default 1: the XL baseline alone is ~35 s of CPU)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: stable timings on shared CPUs)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall: elapsed time (default); cpu: this process's CPU time, for a machine shared with other jobs")
    args = parser.parse_args(argv)
    quiet = logging.getLogger("tinyinterp")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the index build's INFO lines would drown the table; restored below
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    print(f"neuron page: top-{args.k} examples of a layer-{LAYER} neuron; threads={args.threads}; clock={args.clock}")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            ratios = [bench_model(name, args, Path(tmp)) for name in args.models]
    finally:  # main() also runs inside the test process: leave its logging and threads as they were
        quiet.setLevel(level)
        torch.set_num_threads(threads)
    print(f"smallest speed-up {min(ratios):.2f} (bar >= 5)")
    print(f"ratio={min(ratios):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
