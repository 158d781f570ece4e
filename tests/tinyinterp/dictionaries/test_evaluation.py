"""Honest metrics: what `sae eval` reports equals a recomputation from the saved files and the model's own forward."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import tinyinterp
from tinyinterp.cli import main
from tinyinterp.data.corpus import TokenizedCorpus
from tinyinterp.interp.inputs import document_windows, iter_batches

N_TOKENS = 1500


def _recompute(run, dict_dir):
    """Explained variance, L0 and CE-loss score written out from the formulas, on the same tokens."""
    cfg = json.loads((dict_dir / "cfg.json").read_text())
    w = load_file(dict_dir / "sae_weights.safetensors")
    hook_in = cfg["metadata"]["hook_name"]
    hook_out = cfg["metadata"].get("hook_name_out", hook_in)
    model = tinyinterp.load(str(run)).eval()
    corpus = TokenizedCorpus.open(run / "data" / "val")
    xs, xhats, l0s, ce = [], [], [], {"clean": [], "spliced": [], "zero": []}
    seen = 0
    for tokens, mask, _ in iter_batches(corpus, document_windows(corpus, min(128, model.cfg.n_ctx)), 8):
        acts = {}
        clean = model.run_with_hooks(tokens, fwd_hooks=[(h, lambda a, hook: acts.__setitem__(hook.name, a))
                                                        for h in {hook_in, hook_out}])
        x_in = acts[hook_in]
        centred = x_in - w["b_dec"] if cfg["apply_b_dec_to_input"] else x_in
        pre = torch.relu(centred @ w["W_enc"] + w["b_enc"])
        keep = pre >= pre.topk(cfg["k"], dim=-1).values[..., -1:]
        feats = torch.where(keep, pre, 0.0)
        recon = feats @ w["W_dec"] + w["b_dec"]
        spliced = model.run_with_hooks(tokens, fwd_hooks=[(hook_out, lambda a, hook: recon)])
        zero = model.run_with_hooks(tokens, fwd_hooks=[(hook_out, lambda a, hook: torch.zeros_like(a))])
        m = mask.reshape(-1)
        xs.append(acts[hook_out].reshape(-1, recon.shape[-1])[m])
        xhats.append(recon.reshape(-1, recon.shape[-1])[m])
        l0s.append((feats.reshape(-1, feats.shape[-1])[m] > 0).sum(-1).float())
        both = (mask[:, :-1] & mask[:, 1:]).reshape(-1)
        for name, logits in (("clean", clean), ("spliced", spliced), ("zero", zero)):
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1), reduction="none")
            ce[name].append(loss[both])
        seen += int(m.sum())
        if seen >= N_TOKENS:
            break
    x, xhat = torch.cat(xs).double(), torch.cat(xhats).double()
    variance = x.pow(2).sum(-1).mean() - x.mean(0).pow(2).sum()
    ev = 1 - (x - xhat).pow(2).sum(-1).mean() / variance
    c = {k: torch.cat(v).double().mean() for k, v in ce.items()}
    return {"explained_variance": float(ev), "l0": float(torch.cat(l0s).mean()), "ce_loss_without_sae": float(c["clean"]),
            "ce_loss_with_sae": float(c["spliced"]), "ce_loss_with_ablation": float(c["zero"]), "n_tokens": seen}


@pytest.mark.parametrize("which", ["trained_sae", "trained_transcoder"])
def test_sae_eval_reports_what_an_independent_recomputation_finds(dict_run, which, request):
    dict_dir = request.getfixturevalue(which)
    assert main(["sae", "eval", str(dict_run), "--dict", str(dict_dir), "--tokens", str(N_TOKENS), "--no-progress"]) == 0
    reported = json.loads((dict_dir / "eval.json").read_text())
    expected = _recompute(dict_run, dict_dir)
    assert reported["n_tokens"] == expected["n_tokens"]
    for key in ("explained_variance", "l0", "ce_loss_without_sae", "ce_loss_with_sae", "ce_loss_with_ablation"):
        assert reported[key] == pytest.approx(expected[key], abs=1e-5), key
    # The score is SAELens's ratio of those (near-equal losses of a random model make it ill-conditioned,
    # so it is checked against the components rather than at 1e-5 against a second float32 pass).
    a, d, c = (reported[k] for k in ("ce_loss_with_ablation", "ce_loss_with_sae", "ce_loss_without_sae"))
    assert reported["ce_loss_score"] == pytest.approx((a - d) / (a - c), rel=1e-12)
    assert reported["ce_loss_score"] == pytest.approx(
        (expected["ce_loss_with_ablation"] - expected["ce_loss_with_sae"])
        / (expected["ce_loss_with_ablation"] - expected["ce_loss_without_sae"]), rel=1e-3)
    assert 0 < reported["l0"] <= 8
    assert reported["dead_features"] + sum(reported["density_histogram"]["counts"]) == 128
    assert len(reported["feature_density"]) == 128


def test_the_trained_sae_learned_something(trained_sae, dict_run):
    main(["sae", "eval", str(dict_run), "--dict", str(trained_sae), "--tokens", "800", "--no-progress"])
    reported = json.loads((trained_sae / "eval.json").read_text())
    assert reported["explained_variance"] > 0.5 and reported["ce_loss_score"] > 0.5
