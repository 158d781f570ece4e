"""Hook names every model must offer, and comparing two activation caches hook by hook."""

from __future__ import annotations

import torch

LEGACY_HOOKS = [
    "hook_embed", "hook_pos_embed", "ln_final.hook_normalized",
    *[
        f"blocks.{layer}.{name}"
        for layer in range(2)
        for name in (
            "hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out", "hook_mlp_out",
            "attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_z", "attn.hook_pattern",
            "attn.hook_attn_scores", "mlp.hook_pre", "mlp.hook_post", "ln1.hook_normalized", "ln2.hook_normalized",
        )
    ],
]
"""The TransformerLens legacy hook names of a two-layer model (AGENTS.md, "Models")."""


def compare_caches(ours, theirs, arch: str) -> float:
    """Max difference over every hook both caches hold; hook_attn_scores compared where unmasked."""
    shared = sorted(set(ours.keys()) & set(theirs.keys()))
    worst = 0.0
    for name in shared:
        a, b = ours[name], theirs[name]
        assert a.shape == b.shape, name
        if name.endswith("hook_attn_scores"):
            if arch == "gpt_neo":
                # TL 4.3's GPT-Neo bridge fires hook_attn_scores with the softmaxed pattern (a bridge quirk):
                # check that it equals our pattern, so the quirk stays visible here if it is fixed.
                b, a = b, ours[name.replace("hook_attn_scores", "hook_pattern")]
            else:
                unmasked = torch.isfinite(a)
                assert (b[~unmasked] < -1e9).all() or not torch.isfinite(b[~unmasked]).any(), name
                a, b = a[unmasked], b[unmasked]
        worst = max(worst, (a - b).abs().max().item())
    return worst
