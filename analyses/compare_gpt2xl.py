"""Ours vs. GPT-2 XL: neuron purity per layer and head classes, on the same stories (paper, Sec. on interpretability).

Loads ``--model`` (default ``gpt2-xl``) with ``tinyinterp.load`` — imported natively into our own
``HookedTransformer`` (``--backend bridge`` for TransformerBridge); it needs the hub or a local copy:
offline it fails with the loader's one-line error — and compares it with a run directory on documents
from ``--texts`` (each model tokenizes them itself). Records wall time and peak RSS.
Writes ``compare_gpt2xl.png`` (mean purity and role share per relative depth; head classes) and
``compare_gpt2xl.json`` (the ComparisonResult + time + memory).

Measured on the GPT-2 XL shape (48 layers x 6,400 neurons x 25 heads, 1.56B parameters, fp32, random
weights in a local folder — the hub is unreachable here), native import, CPU, one thread on a 2-core
machine shared with other jobs (this process got 43% of a core):

    python -m analyses.compare_gpt2xl RUN --model /models/gpt2-xl --texts train-v2-gpt4-head.txt --max-docs 5 --n-samples 4

911 indexed tokens + 4 windows of 128 tokens for the heads: 2,231 s wall, 921 s CPU, peak RSS 15.1 GB.
GPT-2 XL's neuron index alone: 236 s wall for the 911 tokens (~260 s wall, ~100 s CPU per 1,000
tokens); the head decomposition fit of its 1,200 heads and the purity of its 307,200 neurons take most
of the rest. Memory: 6.2 GB of weights, held twice while the checkpoint is converted, plus ~1.3 KB of
index state per neuron. On a GPU use ``--device cuda``; on CPU keep ``--max-docs`` small.

    python -m analyses.compare_gpt2xl runs/demo --texts ../shared/data/tinystories/train-v2-gpt4-head.txt --max-docs 200
    python -m analyses.compare_gpt2xl runs/demo --model /models/gpt2-small-random --texts stories.txt   # any local HF folder
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot(result, path: Path) -> None:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4))
    for p in (result.a, result.b):
        depth = [(r["layer"] + 0.5) / p.n_layers for r in p.purity_by_layer]
        ax1.plot(depth, [r["mean_purity"] for r in p.purity_by_layer], marker="o", label=f"{p.name} purity")
        ax1.plot(depth, [r["share_role"] for r in p.purity_by_layer], ls="--", marker="x", label=f"{p.name} role share")
        ax1.axhline(p.chance_purity, color="gray", lw=0.5)
    ax1.set_xlabel("relative depth")
    ax1.set_title("neuron purity by layer (gray: chance)")
    ax1.legend(fontsize=7)
    classes = list(result.a.head_counts)
    for i, p in enumerate((result.a, result.b)):
        total = max(sum(p.head_counts.values()), 1)
        ax2.bar([x + 0.4 * i for x in range(len(classes))], [p.head_counts[c] / total for c in classes], width=0.4, label=p.name)
    ax2.set_xticks([x + 0.2 for x in range(len(classes))], classes)
    ax2.set_title("share of heads per class")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    from tinyinterp.cli.support import run_cli

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="our run directory")
    parser.add_argument("--model", default="gpt2-xl", help="model to compare with (hub name or local HF folder; default gpt2-xl)")
    parser.add_argument("--texts", required=True, help=".txt/.jsonl file or folder of stories")
    parser.add_argument("--max-docs", type=int, default=200, help="stories used (default 200)")
    parser.add_argument("--n-samples", type=int, default=32, help="stories in the head sample (default 32)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--backend", choices=("native", "bridge"), default="native",
                        help="how to load --model: our own model (default) or TransformerBridge")
    parser.add_argument("--out", default="figures", help="output folder (default figures/)")
    args = parser.parse_args(argv)
    return run_cli(lambda: _compare_and_plot(args))


def _compare_and_plot(args: argparse.Namespace) -> int:
    import tinyinterp
    from tinyinterp.interp.compare import compare, read_texts
    from tinyinterp.interp.heads import HeadConfig
    from tinyinterp.interp.neuron_index import NeuronIndexConfig

    out = Path(args.out)
    start = time.perf_counter()
    ours = tinyinterp.load(args.run_dir, device=args.device).eval()
    other = tinyinterp.load(args.model, device=args.device, backend=args.backend).eval()
    texts = read_texts(args.texts, max_docs=args.max_docs)
    result = compare(ours, other, texts, work_dir=out / "compare_work",
                     index_config=NeuronIndexConfig(device=args.device, seq_len=128),
                     head_config=HeadConfig(n_samples=args.n_samples, device=args.device))
    seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.mkdir(parents=True, exist_ok=True)
    result.save(out / "compare_work")
    plot(result, out / "compare_gpt2xl.png")
    (out / "compare_gpt2xl.json").write_text(json.dumps({
        "comparison": json.loads((out / "compare_work" / "comparison.json").read_text()),
        "seconds": round(seconds, 1), "peak_rss_mib": round(peak_mib, 1), "device": args.device, "max_docs": args.max_docs,
        "backend": args.backend, "model_class": type(other).__name__,
    }, indent=1))
    print(result.format())
    print(f"time {seconds:.1f} s, peak RSS {peak_mib:.0f} MiB; wrote {out / 'compare_gpt2xl.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
