"""Attention maps of chosen heads on the paper's prompt (Eldan & Li 2023, Fig. on local vs. semantic heads).

Writes ``attention_maps.png`` (one panel per head, token labels on both axes) and ``attention_maps.json``
(tokens, and each head's pattern and class when ``analysis/heads/heads.json`` exists).

    python -m analyses.attention_maps runs/demo --heads 0.1,0.3,1.2 --out figures/
Default heads: up to 3 local and 3 semantic heads from the run's head analysis, else all heads of layer 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

PAPER_PROMPT = ('One day, Lucy asks Tom: "I am looking for a banana but I can\'t find it". '
                'Tom says: "Don\'t worry, I will help you"')


def pick_heads(model_spec: str, n_heads: int) -> tuple[list[tuple[int, int]], dict]:
    from tinyinterp.interp.heads import HEADS_FILE, HeadResult

    heads_dir = Path(model_spec) / "analysis" / "heads"
    if (heads_dir / HEADS_FILE).is_file():
        result = HeadResult.load(heads_dir)
        by = result.by_class()
        chosen = by["local"][:3] + by["semantic"][:3] or by["mixed"][:6]
        return chosen, {f"{l}.{h}": str(result.head_class[l, h]) for l, h in chosen}
    return [(0, h) for h in range(n_heads)], {}


@torch.no_grad()
def attention_maps(model, heads: list[tuple[int, int]], prompt: str = PAPER_PROMPT) -> tuple[list[str], dict]:
    tokens = torch.tensor([model.tokenizer.encode(prompt)[: model.cfg.n_ctx]])  # tiny test models have short contexts
    names = {f"blocks.{l}.attn.hook_pattern" for l, _ in heads}
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
    patterns = {f"{l}.{h}": cache[f"blocks.{l}.attn.hook_pattern"][0, h].float().tolist() for l, h in heads}
    return [model.tokenizer.token_str(t) for t in tokens[0].tolist()], patterns


def plot(tokens: list[str], patterns: dict, classes: dict, path: Path) -> None:
    n = len(patterns)
    cols = min(3, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 6 * rows), squeeze=False)
    for ax, (name, pattern) in zip(axes.flat, patterns.items()):
        ax.imshow(pattern, cmap="Blues", vmin=0, vmax=1)
        ax.set_title(f"L{name.replace('.', ' H')} {classes.get(name, '')}")
        ax.set_xticks(range(len(tokens)), tokens, rotation=90, fontsize=6)
        ax.set_yticks(range(len(tokens)), tokens, fontsize=6)
    for ax in axes.flat[n:]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    from tinyinterp.cli.support import run_cli

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="run directory or model name/path (tinyinterp.load)")
    parser.add_argument("--heads", default=None, help="comma-separated LAYER.HEAD list (default: from the head analysis)")
    parser.add_argument("--prompt", default=PAPER_PROMPT, help="text to show attention on (default: the paper's prompt)")
    parser.add_argument("--out", default="figures", help="output folder (default figures/)")
    args = parser.parse_args(argv)
    return run_cli(lambda: _draw(args), also_catch=(ValueError,))  # ValueError: a malformed --heads item


def _draw(args: argparse.Namespace) -> int:
    import tinyinterp
    from tinyinterp.errors import TinyinterpError

    model = tinyinterp.load(args.model).eval()
    if args.heads:
        heads = [tuple(int(x) for x in item.split(".")) for item in args.heads.split(",")]
        classes = {}
    else:
        heads, classes = pick_heads(args.model, model.cfg.n_heads)
    for l, h in heads:
        if not (0 <= l < model.cfg.n_layers and 0 <= h < model.cfg.n_heads):
            raise TinyinterpError(f"--heads {l}.{h}: out of range (layers 0..{model.cfg.n_layers - 1}, heads 0..{model.cfg.n_heads - 1})")
    tokens, patterns = attention_maps(model, heads, args.prompt)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot(tokens, patterns, classes, out / "attention_maps.png")
    (out / "attention_maps.json").write_text(json.dumps({"prompt": args.prompt, "tokens": tokens, "classes": classes,
                                                          "patterns": patterns}))
    print(f"wrote {out / 'attention_maps.png'} and {out / 'attention_maps.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
