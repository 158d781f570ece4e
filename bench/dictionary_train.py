"""Benchmark: SAE training tokens/s, our trainer vs EleutherAI's eai-sparsify 1.3.3, same model, same activations.

For each preset shape (default ``tinystories-1m`` and ``tinystories-33m``, random init, a 10,001-token
BPE trained on the local TinyStories text), in one run:

* the model is exported to a Hugging Face folder (``tinyinterp.hf.export``, exact weights);
* the text is cut into ``--seq-len`` windows (EOT-separated stories, as sparsify's ``chunk_and_tokenize``
  does), shuffled once; both trainers read the same windows in the same order;
* **ours**: ``DictionaryTrainer`` with activations streamed from our model (``ActivationStream``: one
  forward per batch of windows that stops after the hooked block, a shuffle buffer of
  ``--buffer-batches`` steps) on ``blocks.L.hook_mlp_out``;
* **sparsify**: ``sparsify.Trainer`` on the HF export, hookpoint ``h.L.mlp`` (the same tensor: the MLP's
  output), run by ``--sparsify-python`` (a separate venv; sparsify is never installed in the project's)
  through ``bench/sparsify_side.py``; its default optimizer (signum), AuxK on with our coefficient and
  dead threshold;
* same width, k, batch (``--batch-seqs`` × ``--seq-len`` tokens a step), token budget and thread count.

Tokens/s is trained tokens over the wall time of the training call (``run()`` / ``fit()``, model
forwards, steps and the final save included; model loading excluded); ``--clock cpu`` uses each
process's CPU time instead (steadier when other processes load the machine); both are printed. Both dictionaries are then
scored by the same code on held-out windows of the same model: FVU (squared error / total variance)
and the dead fraction (features never active on those tokens). Per preset ``ours/sparsify`` is the
tokens/s ratio; the last line is ``ratio=<smallest>`` (bar >= 1.0).

    python bench/dictionary_train.py --sparsify-python /work/sparsify-venv/bin/python
    TINYINTERP_SPARSIFY_PYTHON=/work/sparsify-venv/bin/python python bench/dictionary_train.py

Without a sparsify interpreter (flag or env var) only our side runs and the last line says so
(``ratio=nan``).
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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tinyinterp.data.corpus import TokenizedCorpus  # noqa: E402
from tinyinterp.dictionaries.activations import ActivationStream  # noqa: E402
from tinyinterp.dictionaries.config import DictionaryConfig, TrainConfig  # noqa: E402
from tinyinterp.dictionaries.formats import load_dictionary  # noqa: E402
from tinyinterp.dictionaries.training import DictionaryTrainer  # noqa: E402
from tinyinterp.interp.inputs import document_windows  # noqa: E402

SPARSIFY_ENV = "TINYINTERP_SPARSIFY_PYTHON"
SIDE_SCRIPT = ROOT / "bench" / "sparsify_side.py"


@dataclass
class Side:
    name: str
    seconds: float
    cpu_seconds: float
    tokens: int
    fvu: float = float("nan")
    dead_fraction: float = float("nan")
    own: tuple[float, float] | None = None
    """sparsify's own held-out FVU and dead fraction (its SAE, its HF model): a cross-check of ``score``."""

    def tokens_per_s(self, clock: str = "wall") -> float:
        return self.tokens / (self.cpu_seconds if clock == "cpu" else self.seconds)


def make_tokenizer(n_stories: int, vocab: int):
    from tinyinterp.data.corpus_readers import iter_documents
    from tinyinterp.data.paths import data_dir
    from tinyinterp.data.tokenizer import Tokenizer

    text = data_dir() / "tinystories" / "train-v1-hf-head.txt"
    stories = list(iter_documents(text, max_docs=n_stories))
    return Tokenizer.train_bpe(stories, vocab_size=vocab - 1, progress=False), stories


def make_windows(tokenizer, stories: list[str], seq_len: int) -> np.ndarray:
    """(n, seq_len) windows of the EOT-joined stories, each starting with EOT (sparsify's chunking)."""
    ids: list[int] = []
    for doc in tokenizer.encode_batch(stories):
        ids.append(tokenizer.eot_id)
        ids.extend(doc)
    n = len(ids) // seq_len
    return np.asarray(ids[: n * seq_len], dtype=np.int64).reshape(n, seq_len)


def write_corpus(path: Path, windows: np.ndarray, tokenizer) -> TokenizedCorpus:
    """A corpus folder whose documents are exactly ``windows`` (so our stream reads the same rows)."""
    path.mkdir(parents=True, exist_ok=True)
    windows.astype(np.uint16).tofile(path / "tokens.bin")
    np.save(path / "doc_offsets.npy", np.arange(0, windows.size + 1, windows.shape[1], dtype=np.int64))
    meta = {"format_version": 1, "dtype": "uint16", "n_tokens": int(windows.size), "n_docs": len(windows),
            "vocab_size": tokenizer.vocab_size, "eot_id": tokenizer.eot_id,
            "tokenizer_fingerprint": tokenizer.fingerprint(), "source": "bench/dictionary_train.py"}
    (path / "meta.json").write_text(json.dumps(meta))
    return TokenizedCorpus.open(path)


def train_ours(model, corpus, cfg: DictionaryConfig, args, out: Path) -> tuple[Side, object]:
    batch_tokens = args.batch_seqs * args.seq_len
    train = TrainConfig(tokens=args.tokens, batch_tokens=batch_tokens, seq_len=args.seq_len, model_batch=args.batch_seqs,
                        buffer_tokens=batch_tokens * args.buffer_batches, checkpoint_every=10**9, seed=0)
    source = ActivationStream(model, corpus, cfg, args.seq_len, args.batch_seqs, train.buffer_tokens, seed=0)
    trainer = DictionaryTrainer(cfg, train, out, source)
    wall, cpu = time.perf_counter(), time.process_time()
    coder = trainer.run(progress=False)
    return Side("ours", time.perf_counter() - wall, time.process_time() - cpu, trainer.tokens), coder


def train_sparsify(python: str, hf_dir: Path, windows: np.ndarray, eval_windows: np.ndarray, cfg: DictionaryConfig, layer: int, args,
                   work: Path) -> tuple[Side, object]:
    steps = args.tokens // (args.batch_seqs * args.seq_len)
    np.save(work / "sparsify_tokens.npy", windows[: steps * args.batch_seqs])
    np.save(work / "sparsify_eval.npy", eval_windows)
    spec = {"hf_dir": str(hf_dir), "tokens": str(work / "sparsify_tokens.npy"), "eval_tokens": str(work / "sparsify_eval.npy"),
            "hookpoint": f"h.{layer}.mlp",
            "width": cfg.d_sae, "k": cfg.k, "batch_seqs": args.batch_seqs, "optimizer": "signum",
            "auxk_alpha": TrainConfig().aux_coef, "dead_feature_threshold": TrainConfig().dead_after_tokens,
            "save_dir": str(work / "sparsify"), "threads": args.threads}
    (work / "sparsify_spec.json").write_text(json.dumps(spec))
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), WANDB_MODE="disabled", TOKENIZERS_PARALLELISM="false",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONPATH="")
    done = subprocess.run([python, str(SIDE_SCRIPT), str(work / "sparsify_spec.json")], capture_output=True, text=True,
                          env=env, cwd=work)
    if done.returncode != 0:
        raise SystemExit(f"error: the sparsify side failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    coder = load_dictionary(result["sae_dir"], cfg.hook_in, cfg.hook_out)  # our sparsify-layout reader
    side = Side("sparsify", result["seconds"], result["cpu_seconds"], result["tokens"])
    side.own = (result["own_fvu"], result["own_dead_fraction"])
    return side, coder


@torch.no_grad()
def score(model, corpus, windows: np.ndarray, coder, hook: str, d_sae: int) -> tuple[float, float]:
    """(FVU, dead fraction) of ``coder`` on the held-out ``windows`` of ``corpus``."""
    from tinyinterp.interp.activations import iter_activations

    sq_err, rows, fired = 0.0, [], torch.zeros(d_sae, dtype=torch.bool)
    for batch in iter_activations(model, corpus, windows, [hook], batch_size=16):
        x = batch.real_rows(batch.acts[hook]).float()
        values, indices, _ = coder.encode_topk(x)
        sq_err += float((x - coder.decode_topk(values, indices)).pow(2).sum())
        fired[indices[values > 0]] = True
        rows.append(x)
    x = torch.cat(rows)
    return sq_err / float((x - x.mean(0)).pow(2).sum()), 1.0 - float(fired.float().mean())


def bench_preset(preset: str, args, python: str | None, work: Path) -> list[Side]:
    from tinyinterp.hf.export import export_model
    from tinyinterp.models.transformer import HookedTransformer
    from tinyinterp.models.zoo import preset_config

    tokenizer, stories = make_tokenizer(args.stories, args.vocab)
    windows = make_windows(tokenizer, stories, args.seq_len)
    windows = windows[np.random.default_rng(0).permutation(len(windows))]
    n_eval = max(1, args.eval_tokens // args.seq_len)
    need = args.tokens // args.seq_len + args.buffer_batches * args.batch_seqs + n_eval
    if len(windows) < need:
        raise SystemExit(f"error: --stories {args.stories} gives {len(windows)} windows, the run needs {need}")
    train_windows, eval_windows = windows[:-n_eval], windows[-n_eval:]
    eval_corpus = write_corpus(work / "eval", eval_windows, tokenizer)

    torch.manual_seed(0)
    model = HookedTransformer(preset_config(preset, d_vocab=tokenizer.vocab_size)).eval()
    model.tokenizer = tokenizer
    hf_dir = export_model(model, work / "hf", tokenizer)
    layer = model.cfg.n_layers - 1 if args.layer is None else args.layer
    hook = f"blocks.{layer}.hook_mlp_out"
    d = model.cfg.d_model
    cfg = DictionaryConfig("sae", hook, hook, d, d, args.expansion * d, args.k, model_name=preset)
    # Our stream reads windows in its own seeded order: give it the windows in that order's inverse,
    # so it visits them exactly in the order sparsify does (train_windows[0], [1], ...).
    order = np.random.default_rng(0).permutation(len(train_windows))
    ours_corpus = write_corpus(work / "train", train_windows[np.argsort(order)], tokenizer)

    sides, coders = [], []
    if python:  # sparsify first: our side then runs on a machine no less warm than its
        side, coder = train_sparsify(python, hf_dir, train_windows, eval_windows, cfg, layer, args, work)
        sides.append(side), coders.append(coder)
    side, coder = train_ours(model, ours_corpus, cfg, args, work / "ours")
    sides.insert(0, side), coders.insert(0, coder)
    eval_rows = document_windows(eval_corpus, args.seq_len)
    for side, coder in zip(sides, coders):
        side.fvu, side.dead_fraction = score(model, eval_corpus, eval_rows, coder, hook, cfg.d_sae)
    print(f"{preset}: {hook} (sparsify h.{layer}.mlp), d_in {d}, width {cfg.d_sae}, k {cfg.k}, "
          f"batch {args.batch_seqs}x{args.seq_len} tokens, {args.tokens} training tokens, {args.threads} thread(s)")
    for side in sides:
        print(f"  {side.name:>8}: {side.tokens_per_s(args.clock):9.0f} tokens/s ({args.clock})  ({side.tokens} tokens in {side.seconds:.1f} s wall, "
              f"{side.cpu_seconds:.1f} s CPU)  held-out FVU {side.fvu:.4f}  dead {side.dead_fraction:.3f} "
              f"(never active in {len(eval_windows) * args.seq_len} tokens)"
              + (f"; sparsify's own scoring: FVU {side.own[0]:.4f}, dead {side.own[1]:.3f}" if side.own else ""))
    return sides


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+", default=["tinystories-1m", "tinystories-33m"])
    p.add_argument("--sparsify-python", default=os.environ.get(SPARSIFY_ENV),
                   help=f"python of a venv with eai-sparsify 1.3.3 (default: ${SPARSIFY_ENV}; none: our side only)")
    p.add_argument("--tokens", type=int, default=65_536, help="training tokens per trainer (default 65,536)")
    p.add_argument("--batch-seqs", type=int, default=16, help="windows per step (default 16)")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--expansion", type=int, default=8, help="width = expansion x d_model (default 8)")
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--layer", type=int, default=None, help="block whose MLP output is hooked (default: the last)")
    p.add_argument("--buffer-batches", type=int, default=4, help="our shuffle buffer, in steps (default 4)")
    p.add_argument("--eval-tokens", type=int, default=16_384, help="held-out tokens for FVU / dead (default 16,384)")
    p.add_argument("--stories", type=int, default=4000, help="TinyStories stories tokenized (default 4000)")
    p.add_argument("--vocab", type=int, default=10_001)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="time the ratio uses: wall (default) or each trainer process's CPU time (steadier on a busy machine)")
    args = p.parse_args(argv)
    logger = logging.getLogger("tinyinterp")
    level, threads = logger.level, torch.get_num_threads()
    logger.setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    python = args.sparsify_python if args.sparsify_python and args.sparsify_python.lower() != "none" else None
    if python and not Path(python).is_file():
        raise SystemExit(f"error: --sparsify-python {python}: no such interpreter")
    if not python:
        print(f"sparsify side skipped: no --sparsify-python and no ${SPARSIFY_ENV} (a venv with eai-sparsify 1.3.3, "
              "e.g. python3 -m venv V && V/bin/pip install torch==2.13.0 eai-sparsify==1.3.3)")
    ratios = []
    try:
        for preset in args.presets:
            with tempfile.TemporaryDirectory(prefix="bench-dict-") as tmp:
                sides = bench_preset(preset, args, python, Path(tmp))
            if len(sides) == 2:
                ratios.append(sides[0].tokens_per_s(args.clock) / sides[1].tokens_per_s(args.clock))
                other = "cpu" if args.clock == "wall" else "wall"
                print(f"  ours/sparsify tokens/s: {ratios[-1]:.3f} ({args.clock} clock; "
                      f"{sides[0].tokens_per_s(other) / sides[1].tokens_per_s(other):.3f} by the {other} clock)")
    finally:  # the smoke test runs main() in-process: leave the log level and threads as they were
        torch.set_num_threads(threads)
        logger.setLevel(level)
    print(f"ratio={min(ratios):.3f}" if ratios else "ratio=nan (sparsify side not run)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
