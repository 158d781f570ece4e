"""Benchmark: `tinyinterp analyze emergence` over N checkpoints vs. N independent `analyze` calls.

A small run is trained once (``test-small``, synthetic stories from the shared TinyStories text when
available, checkpoints every few steps, all kept). Then, in the same run of this script:

- **emergence**: one ``tinyinterp analyze emergence RUN`` process — one model, one tokenized corpus;
  per checkpoint the neuron index + purity, the head classes and the fixed-prompt patterns;
- **independent**: for every checkpoint, ``tinyinterp analyze neurons CKPT`` and ``tinyinterp analyze
  heads CKPT`` as separate processes with the same documents and sample sizes (what a user would run
  without the emergence command: every call re-imports, reloads and re-opens the corpus).

Both are wall-clock seconds of whole processes. The last line is ``ratio=<independent / emergence>``;
bar: >= 1.5.

    python bench/emergence.py [--checkpoints 6] [--max-docs 100]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tinyinterp.runs.checkpoints import list_checkpoints
from tinyinterp.runs.layout import EMERGENCE_SUMMARY_FILE, STEP_GLOB, corpus_dir, emergence_dir

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "tinyinterp.cli"]


def _run(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoints", type=int, default=6, help="checkpoints analysed (default 6)")
    parser.add_argument("--max-docs", type=int, default=100, help="documents indexed per checkpoint (default 100)")
    parser.add_argument("--n-samples", type=int, default=16, help="documents in each head sample (default 16)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary run directory")
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="bench-emergence-"))
    try:
        run = tmp / "run"
        every = 4
        _run([sys.executable, "-m", "training.train", "--out", str(run), "--preset", "test-small",
              "--max-steps", str(every * args.checkpoints), "--ckpt-every", str(every),
              "--keep-last", str(args.checkpoints + 1), "--batch-size", "8", "--seq-len", "64",
              "--vocab-size", "2000", "--eval-every", str(every), "--eval-batches", "1", "--no-progress"])
        checkpoints = [c.folder for c in list_checkpoints(run)]
        corpus = corpus_dir(run)
        print(f"run: {len(checkpoints)} checkpoints of test-small; {args.max_docs} docs indexed per checkpoint")

        emergence = _run([*CLI, "analyze", "emergence", str(run), "--max-docs", str(args.max_docs),
                          "--n-samples", str(args.n_samples), "--seq-len", "64", "--no-progress"])
        independent = 0.0
        for ckpt in checkpoints:
            out = tmp / "independent" / ckpt.name
            independent += _run([*CLI, "analyze", "neurons", str(ckpt), "--corpus", str(corpus), "--max-docs",
                                 str(args.max_docs), "--out", str(out / "neurons"), "--no-progress"])
            independent += _run([*CLI, "analyze", "heads", str(ckpt), "--corpus", str(corpus), "--n-samples",
                                 str(args.n_samples), "--seq-len", "64", "--out", str(out / "heads"), "--no-progress"])
        n = len(list(emergence_dir(run).glob(f"{STEP_GLOB}/{EMERGENCE_SUMMARY_FILE}")))
        print(f"emergence: {n} states in one process: {emergence:.1f} s ({emergence / n:.2f} s per state)")
        print(f"independent: {len(checkpoints)} x (analyze neurons + analyze heads): {independent:.1f} s "
              f"({independent / len(checkpoints):.2f} s per checkpoint)")
        print(f"ratio={independent / emergence * n / len(checkpoints):.3f}")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
