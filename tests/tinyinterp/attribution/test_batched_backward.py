"""The hand-written batched backward (:class:`~tinyinterp.attribution.edges.FrozenBackward`: closed-form
own layer, low-rank first step through folded per-head maps, last step in value space, token edges in
forward mode) gives exactly the rows of one plain autograd backward pass per target, on any shape."""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.attribution_models import build_model, random_transcoders
from tinyinterp.attribution import ReplacementModel
from tinyinterp.attribution.edges import edge_rows, per_target_rows


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), arch=st.sampled_from(["gpt-neo", "gpt2"]), n_layers=st.integers(1, 4),
       n_heads=st.sampled_from([1, 2, 4]), n_pos=st.integers(1, 20), batch_size=st.integers(1, 30),
       causal=st.booleans())
def test_batched_rows_equal_per_target_rows_on_any_shape(seed, arch, n_layers, n_heads, n_pos, batch_size, causal):
    # n_pos both below and above n_heads + 1: the first step after the closed form runs factored or dense
    model = build_model(arch, seed=seed, d_vocab=30, d_model=16, n_heads=n_heads, n_layers=n_layers).double()
    transcoders = random_transcoders(model, d_sae=20, k=3, seed=seed + 1)
    tokens = torch.randint(0, 30, (n_pos,), generator=torch.Generator().manual_seed(seed + 2))
    rm = ReplacementModel(model, transcoders, tokens)
    logit_vecs = torch.randn(2, model.cfg.d_model, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    reference = per_target_rows(rm, logit_vecs, values_only=False)
    batched = edge_rows(rm, logit_vecs, batch_size=batch_size, causal_buckets=causal)
    assert reference.abs().max() > 1e-3
    assert (batched - reference).abs().max() < 1e-10 * max(1.0, float(reference.abs().max()))


def test_float32_rows_match_the_reference_to_float32_precision():
    model = build_model("gpt-neo", seed=3, d_vocab=30, d_model=32, n_heads=4, n_layers=4)
    transcoders = random_transcoders(model, d_sae=40, k=4, seed=4)
    tokens = torch.randint(0, 30, (24,), generator=torch.Generator().manual_seed(5))
    rm = ReplacementModel(model, transcoders, tokens)
    logit_vecs = torch.randn(3, model.cfg.d_model, generator=torch.Generator().manual_seed(6))
    reference = per_target_rows(rm, logit_vecs)
    batched = edge_rows(rm, logit_vecs, batch_size=16)
    assert batched.dtype == torch.float32
    assert (batched - reference).abs().max() < 1e-5 * max(1.0, float(reference.abs().max()))
