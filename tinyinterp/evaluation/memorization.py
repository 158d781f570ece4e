"""The paper's memorization and diversity analyses with ROUGE-k, saved as histograms (PNG + JSON).

(i)   :func:`half_story_rouge` — cut training stories in half, let the model complete the first
      half, score the completion against the true second half (high = the model recalls the story);
(ii)  :func:`within_prompt_rouge` — for each completion, the maximum ROUGE-k against the other
      completions of the same prompt (high = little diversity);
(iii) :func:`max_training_rouge` — each completion's maximum ROUGE-k over the *whole* training
      set, through :class:`rouge.NgramIndex` (exactly the brute-force answer).

    >>> index = NgramIndex.build(load_training_stories(), n=2)
    >>> report = max_training_rouge(completion_set.texts(), index)
"""

from __future__ import annotations

import logging
from pathlib import Path

from tinyinterp.io.atomic import atomic_write_json
from tinyinterp.errors import DataError
from tinyinterp.evaluation.rouge import NgramIndex, rouge_n

log = logging.getLogger(__name__)

TRAIN_FILES = ("train-v1-hf-head.txt", "train-v2-gpt4-head.txt")
EOT = "<|endoftext|>"


def _read_stories(path: Path) -> list[str]:
    try:
        from tinyinterp.data.corpus import iter_documents
    except ImportError:  # corpus module not available: the train files are EOT-separated text
        return [s.strip() for s in path.read_text(encoding="utf-8").split(EOT) if s.strip()]
    return [d.strip() for d in iter_documents(path) if d.strip()]


def load_training_stories(paths: list[Path] | None = None) -> list[str]:
    """The stories of the shared TinyStories train files (or of ``paths``), in file order."""
    if paths is None:
        from tinyinterp.data.paths import data_dir
        paths = [data_dir() / "tinystories" / name for name in TRAIN_FILES]
    stories: list[str] = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: training file not found; pass --train FILE")
        stories.extend(_read_stories(path))
    if not stories:
        raise DataError(f"{', '.join(map(str, paths))}: no stories found")
    return stories


def split_in_half(story: str) -> tuple[str, str]:
    """(first half, second half) by words, cut at the middle word boundary."""
    words = story.split(" ")
    mid = len(words) // 2
    return " ".join(words[:mid]), " " + " ".join(words[mid:])


def half_story_rouge(model, stories: list[str], n: int = 2, max_new_tokens: int = 200, seed: int = 0,
                     progress: bool = False) -> dict:
    """(i) Complete first halves of training stories; ROUGE-n of each completion vs the true second half."""
    from tinyinterp.models.generation import SamplingConfig, generate_tokens, prompt_ids

    tokenizer = model.tokenizer
    halves = [split_in_half(s) for s in stories]
    iterator = range(len(halves))
    if progress:
        from tqdm import tqdm
        iterator = tqdm(iterator, desc="half stories", unit="story")
    rows = []
    for i in iterator:
        first, second = halves[i]
        # Keep the end of a first half that does not fit the context, leaving room to generate.
        ids = prompt_ids(tokenizer, first, max_len=max(2, model.cfg.n_ctx - min(max_new_tokens, model.cfg.n_ctx // 2)))
        cfg = SamplingConfig(max_new_tokens=max_new_tokens, temperature=1.0, seed=seed + i)
        completion = tokenizer.decode(generate_tokens(model, [ids], cfg, eot_id=tokenizer.eot_id)[0])
        s = rouge_n(completion, second, n)
        rows.append({"story": i, "precision": s.precision, "fmeasure": s.fmeasure, "completion": completion})
    return {"n": n, "rows": rows, "precision": [r["precision"] for r in rows], "fmeasure": [r["fmeasure"] for r in rows]}


def within_prompt_rouge(records: list[dict], n: int = 2) -> dict:
    """(ii) For each completion: max ROUGE-n precision/F against the other completions of its prompt."""
    by_prompt: dict[str, list[str]] = {}
    for r in records:
        by_prompt.setdefault(r["prompt_id"], []).append(r["completion"])
    precision, fmeasure = [], []
    for texts in by_prompt.values():
        if len(texts) < 2:
            continue
        for i, t in enumerate(texts):
            scores = [rouge_n(t, other, n) for j, other in enumerate(texts) if j != i]
            precision.append(max(s.precision for s in scores))
            fmeasure.append(max(s.fmeasure for s in scores))
    return {"n": n, "precision": precision, "fmeasure": fmeasure}


def max_training_rouge(texts: list[str], index: NgramIndex, references: list[str] | None = None,
                       examples: int = 3, progress: bool = False) -> dict:
    """(iii) Each text's maximum ROUGE-n over the indexed training set (+ the closest pairs as examples)."""
    iterator = texts
    if progress:
        from tqdm import tqdm
        iterator = tqdm(texts, desc=f"max ROUGE-{index.n} vs training", unit="text")
    best = [index.max_rouge(t) for t in iterator]
    out = {"n": index.n, "n_references": index.n_docs, "precision": [b.precision for b in best],
           "fmeasure": [b.fmeasure for b in best], "best": [b.to_dict() for b in best]}
    if references is not None:
        top = sorted(range(len(best)), key=lambda i: -best[i].precision)[:examples]
        out["examples"] = [{"completion": texts[i], "training_story": references[best[i].precision_doc],
                            "precision": best[i].precision} for i in top]
    return out


def histogram(values: list[float], bins: int = 20) -> dict:
    """Counts over ``bins`` equal bins of [0, 1] (1.0 falls in the last bin) plus summary numbers."""
    counts = [0] * bins
    for v in values:
        counts[min(int(v * bins), bins - 1)] += 1
    ordered = sorted(values)
    mean = sum(values) / len(values) if values else None
    median = ordered[len(ordered) // 2] if ordered else None
    return {"bin_edges": [i / bins for i in range(bins + 1)], "counts": counts, "n": len(values),
            "mean": mean, "median": median, "max": ordered[-1] if ordered else None}


def save_histograms(series: dict[str, list[float]], out_dir: Path, title: str, stem: str) -> dict:
    """Write ``<stem>.json`` (histograms + raw values) and ``<stem>.png`` (one panel per series)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = {name: {**histogram(vals), "values": vals} for name, vals in series.items()}
    atomic_write_json(out_dir / f"{stem}.json", {"title": title, "series": data})
    fig, axes = plt.subplots(1, len(series), figsize=(4.5 * len(series), 3.5), squeeze=False)
    for ax, (name, vals) in zip(axes[0], series.items()):
        ax.hist(vals, bins=20, range=(0, 1), color="tab:blue", edgecolor="white")
        ax.set_title(f"{name} (mean {data[name]['mean']:.2f})" if vals else name, fontsize=9)
        ax.set_xlabel("ROUGE score")
        ax.set_ylabel("count")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    tmp = out_dir / f".{stem}.tmp.png"
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(out_dir / f"{stem}.png")
    return data
