"""Benchmark: max ROUGE-2 over the TinyStories training set, n-gram index vs brute force (rouge-score).

The 100 "completions" are made without a model: 90 paragraphs of held-out validation text (novel
text, the usual case) and the second halves of 10 training stories (memorized text: precision 1.0,
the case the index must not get wrong). The training set is every story of the shared train files
(via ``tinyinterp.data.paths.data_dir()``).

The index time *includes* building the index. Brute force (``rouge_score.RougeScorer`` against
every training story) is run on ``--brute`` of the 100 completions, spread evenly over both kinds;
its time per completion is extrapolated to 100. Results are compared exactly (max precision, its
arg-max story, max F-measure, its arg-max, number of ties) on those completions; any difference
exits 1. The last line is ``ratio=<speed-up>``.

    .venv/bin/python bench/rouge_max.py [--brute 10] [--n 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tinyinterp.evaluation.memorization import load_training_stories, split_in_half  # noqa: E402
from tinyinterp.evaluation.rouge import NgramIndex, brute_force_max_rouge  # noqa: E402
from tinyinterp.data.paths import data_dir  # noqa: E402

N_COMPLETIONS = 100
N_MEMORIZED = 10


def make_completions(stories: list[str]) -> list[str]:
    text = (data_dir() / "tinystories" / "validation-hf-head.unsegmented.txt").read_text(encoding="utf-8")
    paragraphs = [p.strip() for p in text.split("\n\n") if len(p.split()) >= 25]
    novel = paragraphs[: N_COMPLETIONS - N_MEMORIZED]
    step = len(stories) // N_MEMORIZED
    memorized = [split_in_half(stories[i * step + 7])[1] for i in range(N_MEMORIZED)]
    # interleave so that an even spread of completions covers both kinds
    out = list(novel)
    for k, m in enumerate(memorized):
        out.insert(k * (N_COMPLETIONS // N_MEMORIZED), m)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--brute", type=int, default=10,
                        help="how many of the 100 completions to also score by brute force (default 10)")
    parser.add_argument("--n", type=int, default=2, help="ROUGE order (default 2)")
    args = parser.parse_args(argv)

    stories = load_training_stories()
    completions = make_completions(stories)
    print(f"training stories: {len(stories)}, completions: {len(completions)}, ROUGE-{args.n}")

    t0 = time.perf_counter()
    index = NgramIndex.build(stories, n=args.n)
    t_build = time.perf_counter() - t0
    indexed = [index.max_rouge(c) for c in completions]
    t_index = time.perf_counter() - t0
    print(f"index: build {t_build:.2f}s + {len(completions)} queries {t_index - t_build:.2f}s = {t_index:.2f}s "
          f"({len(index.vocab)} distinct {args.n}-grams)")

    k = max(1, min(args.brute, len(completions)))
    picks = [round(i * (len(completions) - 1) / max(k - 1, 1)) for i in range(k)] if k > 1 else [0]
    mismatches = 0
    t0 = time.perf_counter()
    for i in picks:
        brute = brute_force_max_rouge(completions[i], stories, n=args.n)
        if brute != indexed[i]:
            mismatches += 1
            print(f"MISMATCH completion {i}: index {indexed[i]} vs brute force {brute}")
    t_brute = time.perf_counter() - t0
    per_completion = t_brute / len(picks)
    t_brute_all = per_completion * len(completions)
    print(f"brute force (rouge-score): {len(picks)} completions in {t_brute:.1f}s = {per_completion:.2f}s each; "
          f"extrapolated to {len(completions)}: {t_brute_all:.0f}s")
    mean_p = sum(r.precision for r in indexed) / len(indexed)
    print(f"mean max ROUGE-{args.n} precision: {mean_p:.3f}; "
          f"memorized (=1.0): {sum(r.precision == 1.0 for r in indexed)}; compared: {len(picks)}, "
          f"mismatches: {mismatches}")
    print(f"ratio={t_brute_all / t_index:.1f}")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
