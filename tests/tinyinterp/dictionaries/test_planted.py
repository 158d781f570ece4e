"""Planted features: a TopK SAE / transcoder trained on synthetic sparse activations finds the planted units."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.planted_features import PlantedSource, matched_unit_correlation, recovered_fraction
from tinyinterp.dictionaries import DictionaryConfig, TrainConfig
from tinyinterp.dictionaries.training import DictionaryTrainer

HOOK = "blocks.0.hook_resid_post"


def _train(tmp_path, source, kind, d_in, d_out, width, k, tokens, lr):
    hooks = (HOOK, HOOK) if kind == "sae" else ("blocks.0.ln2.hook_normalized", "blocks.0.hook_mlp_out")
    cfg = DictionaryConfig(kind, *hooks, d_in, d_out, width, k)
    train = TrainConfig(tokens=tokens, batch_tokens=512, lr=lr, buffer_tokens=512, checkpoint_every=10_000,
                        dead_after_tokens=20_000)
    return DictionaryTrainer(cfg, train, tmp_path, source).run(progress=False)


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), n=st.sampled_from([32, 48]))
def test_an_sae_recovers_planted_directions(tmp_path_factory, seed, n):
    d = 24
    source = PlantedSource(d, d, n, k=3, seed=seed)
    # 4x overcomplete, as the transcoder test: at 2x a draw with a few close planted directions (seed 261)
    # leaves 3-4 of them merged; at 4x 20 of 20 random draws recover every direction.
    coder = _train(tmp_path_factory.mktemp("sae"), source, "sae", d, d, 4 * n, 3, tokens=150_000, lr=3e-3)
    assert recovered_fraction(source.A, coder.W_dec.detach()) >= 0.9


@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), n=st.sampled_from([32, 48]))
def test_a_transcoder_recovers_the_hidden_units_of_a_planted_sparse_mlp(tmp_path_factory, seed, n):
    d_in, d_out = 24, 20
    source = PlantedSource(d_in, d_out, n, k=3, seed=seed, transcode=True)
    coder = _train(tmp_path_factory.mktemp("tc"), source, "transcoder", d_in, d_out, 4 * n, 3, tokens=300_000, lr=5e-3)
    assert recovered_fraction(source.D, coder.W_dec.detach()) >= 0.9  # each hidden unit's output direction
    # ... and the matched feature fires when that hidden unit does (the encoder found its input side too)
    assert float((matched_unit_correlation(source, coder) >= 0.9).float().mean()) >= 0.9
