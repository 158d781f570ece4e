"""Table of the top tokens of selected neurons (the paper's "neuron roles" table), from a run's neuron index.

Writes ``neuron_table.png`` and ``neuron_table.json`` (per neuron: category, purity, type purity, whether it
is a role neuron, top tokens with counts, and the tokens its output promotes most when the index has logit effects).

    python -m analyses.neuron_table runs/demo --neurons 3.17,5.200 --out figures/
Default neurons: the 10 purest role neurons of ``analysis/neurons/purity.json``; when there are fewer, the
list is filled with the highest type purity non-role neurons, marked ``role: false`` (and without ``*`` in the PNG).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from tinyinterp.cli.support import run_cli  # noqa: E402


def neuron_rows(run_dir: Path, neurons: list[tuple[int, int]] | None, n_tokens: int = 8) -> list[dict]:
    from tinyinterp.interp.categories import CATEGORIES, PurityResult
    from tinyinterp.interp.neuron_index import NeuronIndex

    ndir = run_dir / "analysis" / "neurons"
    index = NeuronIndex.load(ndir)
    purity = PurityResult.load(ndir) if (ndir / "purity.json").is_file() else None
    roles = purity.role_mask() if purity is not None else None
    if neurons is None:
        if purity is None:
            neurons = [(0, n) for n in range(min(10, index.d_mlp))]
        else:
            # role neurons first; fill with the next purest (marked non-role) so the table is never empty
            candidates = [purity.top(10, by=by) for by in ("role", "type_purity", "purity")]
            pairs = [(int(l), int(n)) for top in candidates for l, n in zip(top.layer, top.neuron)]
            neurons = list(dict.fromkeys(pairs))[:10]
    rows = []
    for layer, neuron in neurons:
        hist = index.token_histogram(layer, neuron)  # validates the range
        row = {"layer": layer, "neuron": neuron, "top_tokens": dict(list(hist.items())[:n_tokens]),
               "max_activation": float(index.tensors["max"][layer, neuron])}
        if "logit_top_tokens" in index.tensors:
            row["promotes"] = index.logit_effects(layer, neuron, n=5)["promoted"].token.tolist()
        if purity is not None:
            row |= {"category": CATEGORIES[purity.majority[layer, neuron]], "purity": float(purity.purity[layer, neuron]),
                    "type_purity": float(purity.type_purity[layer, neuron]), "role": bool(roles[layer, neuron])}
        rows.append(row)
    return rows


def plot(rows: list[dict], path: Path) -> None:
    cells = [[f"L{r['layer']} N{r['neuron']}{'*' if r.get('role') else ''}", r.get("category", ""),
              f"{r.get('type_purity', float('nan')):.2f}",
              ", ".join(f"{t!r}×{c}" for t, c in r["top_tokens"].items())] for r in rows]
    fig, ax = plt.subplots(figsize=(14, 0.45 * len(rows) + 1))
    ax.axis("off")
    table = ax.table(cellText=cells, colLabels=["neuron (* role)", "category", "type purity", "top tokens (count in top-k)"],
                     loc="center", cellLoc="left", colWidths=[0.08, 0.1, 0.06, 0.76])
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="run directory with analysis/neurons (tinyinterp analyze neurons)")
    parser.add_argument("--neurons", default=None, help="comma-separated LAYER.NEURON list (default: 10 purest role neurons)")
    parser.add_argument("--out", default="figures", help="output folder (default figures/)")
    args = parser.parse_args(argv)
    neurons = [tuple(int(x) for x in s.split(".")) for s in args.neurons.split(",")] if args.neurons else None
    return run_cli(lambda: _table(args, neurons))


def _table(args: argparse.Namespace, neurons) -> int:
    rows = neuron_rows(Path(args.run_dir), neurons)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot(rows, out / "neuron_table.png")
    (out / "neuron_table.json").write_text(json.dumps(rows, indent=1))
    print(f"wrote {out / 'neuron_table.png'} and {out / 'neuron_table.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
