"""``tinyinterp sae eval``: a dictionary measured as SAELens measures one, on held-out tokens.

Each metric follows the function of ``sae_lens/evals.py`` (SAELens 6.54) named beside it, on the
run's validation corpus (windows as in the neuron index; padding excluded):

- ``explained_variance``: ``ExplainedVarianceCalculator`` — 1 − E‖x − x̂‖² / (E‖x‖² − ‖E x‖²), streamed in float64.
- ``mse``: ``get_sparsity_and_variance_metrics`` — per-token ‖x − x̂‖² (sum over dimensions), mean over tokens.
- ``cossim``: same function — mean over tokens of cos(x, x̂).
- ``l0`` / ``l1``: same function — non-zero features per token, and the sum of |activations|.
- ``ce_loss_score``: ``get_downstream_reconstruction_metrics`` — (CE_ablation − CE_dictionary) /
  (CE_ablation − CE_clean), the dictionary spliced in at ``hook_out`` (an SAE replaces its hook, a
  transcoder the MLP's output) and the ablation zeroing that hook.
- ``kl_div_score``: same function — (KL_ablation − KL_dictionary) / KL_ablation, KL(clean ‖ spliced) per token (``_kl``).
- ``feature_density``: same function's featurewise metric — the fraction of tokens each feature fires on;
  ``dead`` = never active in the ``n_tokens`` evaluated, ``dense`` = active on more than 10 %, and a
  histogram of log10 density.

Results are written as ``eval.json`` beside the weights.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tinyinterp.io.atomic import atomic_write_text
from tinyinterp.dictionaries.activations import _flat
from tinyinterp.dictionaries.sparse_coder import SparseCoder
from tinyinterp.interp.inputs import document_windows, iter_batches

log = logging.getLogger(__name__)

EVAL_FILE = "eval.json"
DENSE_THRESHOLD = 0.1


class _ExplainedVariance:
    def __init__(self, d: int):
        self.sum_x = torch.zeros(d, dtype=torch.float64)
        self.sum_sq, self.sum_resid, self.n = 0.0, 0.0, 0

    def add(self, x: torch.Tensor, x_hat: torch.Tensor) -> None:
        x64 = x.double()
        self.sum_x += x64.sum(0)
        self.sum_sq += float(x64.pow(2).sum())
        self.sum_resid += float((x64 - x_hat.double()).pow(2).sum())
        self.n += len(x)

    def value(self) -> float:
        total = self.sum_sq / self.n - float((self.sum_x / self.n).pow(2).sum())
        mse = self.sum_resid / self.n
        if total < 1e-10:
            return 1.0 if mse < 1e-10 else 0.0
        return 1.0 - mse / total


def _kl(clean: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    return F.kl_div(F.log_softmax(new, -1), F.softmax(clean, -1), reduction="none").sum(-1)


def _ce(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """(batch, pos-1) next-token cross-entropy."""
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), tokens[:, 1:].flatten(), reduction="none").view(
        tokens.shape[0], -1)


@torch.no_grad()
def evaluate_dictionary(model, coder: SparseCoder, corpus, n_tokens: int = 20_000, seq_len: int = 128,
                        batch_size: int = 8, progress: bool = True) -> dict:
    """SAELens's metrics of ``coder`` on the first ``n_tokens`` (non-padding) tokens of ``corpus``."""
    from tqdm import tqdm

    cfg = coder.cfg
    coder = coder.to(next(model.parameters()).device).eval()
    windows = document_windows(corpus, min(seq_len, model.cfg.n_ctx))
    ev = _ExplainedVariance(cfg.d_out)
    sums = {"mse": 0.0, "cossim": 0.0, "l0": 0.0, "l1": 0.0}
    ce = {"clean": 0.0, "dictionary": 0.0, "ablation": 0.0}
    kl = {"dictionary": 0.0, "ablation": 0.0}
    n_pred, seen = 0, 0
    fired = torch.zeros(cfg.d_sae, dtype=torch.float64)
    bar = tqdm(total=n_tokens, unit="tok", desc="evaluating dictionary", disable=not progress)
    for tokens, mask, _ in iter_batches(corpus, windows, batch_size, next(model.parameters()).device):
        got: dict[str, torch.Tensor] = {}

        def keep(act, hook):
            got[hook.name] = act

        clean = model.run_with_hooks(tokens, fwd_hooks=[(cfg.hook_in, keep), (cfg.hook_out, keep)])
        shape = got[cfg.hook_out].shape
        x_in = _flat(got[cfg.hook_in]).float()
        feats = coder.encode(x_in)
        recon = coder.decode(feats)  # (batch, pos, d_out)

        def splice(act, hook):
            return recon.reshape(shape).to(act.dtype)

        def ablate(act, hook):
            return torch.zeros_like(act)

        spliced = model.run_with_hooks(tokens, fwd_hooks=[(cfg.hook_out, splice)])
        ablated = model.run_with_hooks(tokens, fwd_hooks=[(cfg.hook_out, ablate)])
        m = mask.reshape(-1)
        x = _flat(got[cfg.hook_out]).float().reshape(-1, cfg.d_out)[m]
        x_hat = recon.reshape(-1, cfg.d_out)[m]
        f = feats.reshape(-1, cfg.d_sae)[m]
        ev.add(x, x_hat)
        sums["mse"] += float((x - x_hat).pow(2).sum(-1).sum())
        sums["cossim"] += float(F.cosine_similarity(x, x_hat, dim=-1).sum())
        sums["l0"] += float((f != 0).sum(-1).float().sum())
        sums["l1"] += float(f.abs().sum(-1).sum())
        fired += (f != 0).double().sum(0).cpu()
        pred = (mask[:, :-1] & mask[:, 1:]).reshape(-1)  # positions whose next token is real
        for name, logits in (("clean", clean), ("dictionary", spliced), ("ablation", ablated)):
            ce[name] += float(_ce(logits, tokens).reshape(-1)[pred].sum())
        for name, logits in (("dictionary", spliced), ("ablation", ablated)):
            kl[name] += float(_kl(clean.float(), logits.float()).reshape(-1)[m].sum())
        n_pred += int(pred.sum())
        seen += int(m.sum())
        bar.update(int(m.sum()))
        if seen >= n_tokens:
            break
    bar.close()
    ce_mean = {k: v / max(n_pred, 1) for k, v in ce.items()}
    kl_mean = {k: v / max(seen, 1) for k, v in kl.items()}
    density = (fired / max(seen, 1)).numpy()
    with np.errstate(divide="ignore"):
        log_density = np.log10(np.where(density > 0, density, np.nan))
    counts, edges = np.histogram(log_density[np.isfinite(log_density)], bins=20, range=(-6, 0))
    denom = ce_mean["ablation"] - ce_mean["clean"]
    result = {
        "hook_in": cfg.hook_in, "hook_out": cfg.hook_out, "kind": cfg.kind, "d_sae": cfg.d_sae, "k": cfg.k,
        "n_tokens": seen,
        "explained_variance": ev.value(),
        "mse": sums["mse"] / seen, "cossim": sums["cossim"] / seen, "l0": sums["l0"] / seen, "l1": sums["l1"] / seen,
        "ce_loss_without_sae": ce_mean["clean"], "ce_loss_with_sae": ce_mean["dictionary"],
        "ce_loss_with_ablation": ce_mean["ablation"],
        "ce_loss_score": (ce_mean["ablation"] - ce_mean["dictionary"]) / denom if abs(denom) > 1e-12 else math.nan,
        "kl_div_with_sae": kl_mean["dictionary"], "kl_div_with_ablation": kl_mean["ablation"],
        "kl_div_score": ((kl_mean["ablation"] - kl_mean["dictionary"]) / kl_mean["ablation"]
                         if kl_mean["ablation"] > 1e-12 else math.nan),
        "dead_features": int((density == 0).sum()), "dead_fraction": float((density == 0).mean()),
        "dense_features": int((density > DENSE_THRESHOLD).sum()), "dense_threshold": DENSE_THRESHOLD,
        "density_histogram": {"log10_edges": edges.tolist(), "counts": counts.tolist()},
        "feature_density": density.tolist(),
    }
    return result


def save_evaluation(result: dict, dict_dir: Path) -> Path:
    path = Path(dict_dir) / EVAL_FILE
    atomic_write_text(path, json.dumps({k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                                        for k, v in result.items()}, indent=2))
    return path
