"""Feature index of a sparse dictionary: exact against a brute-force encode of every token, the neuron
case through a dictionary made of neurons, resume, the early stop, queries and purity, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.neuron_oracle import CFG
from tinyinterp.dictionaries import DictionaryConfig, DictionaryError, SparseCoder, save_dictionary, transcoder_hooks
from tinyinterp.interp import neuron_purity
from tinyinterp.interp.feature_index import FeatureIndex, build_feature_index
from tinyinterp.interp.inputs import document_windows
from tinyinterp.interp.neuron_distribution import ZERO_BIN, bin_edges
from tinyinterp.interp.neuron_index import PROGRESS_FILE, NeuronIndex, NeuronIndexConfig, build_neuron_index

D_SAE, DICT_K = 40, 5


def random_transcoder(model, layer: int = 0, d_sae: int = D_SAE, k: int = DICT_K, seed: int = 0) -> SparseCoder:
    """A random transcoder of block ``layer``'s MLP whose features fire often (positive encoder bias)."""
    hook_in, hook_out = transcoder_hooks(layer)
    d = model.cfg.d_model
    coder = SparseCoder(DictionaryConfig("transcoder", hook_in, hook_out, d, d, d_sae, k))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        coder.W_enc.copy_(torch.randn(d, d_sae, generator=g) / d**0.5)
        coder.b_enc.copy_(torch.rand(d_sae, generator=g) * 0.2)
        coder.W_dec.copy_(torch.randn(d_sae, d, generator=g))
        coder.b_dec.copy_(torch.randn(d, generator=g) * 0.1)
    return coder


@pytest.fixture
def dict_dir(story_model, tmp_path):
    return save_dictionary(random_transcoder(story_model), tmp_path / "dictionaries" / "tc")


@pytest.fixture
def built(story_model, story_corpus, dict_dir):
    return build_feature_index(story_model, story_corpus, dict_dir, NeuronIndexConfig(**CFG), progress=False)


@torch.no_grad()
def brute_force_features(model, coder, corpus, seq_len):
    """Every feature's activation on every token: encode each window's hook_in activation (d_sae, n_tokens)."""
    acts = []
    for _, start, length in document_windows(corpus, seq_len):
        tokens = torch.as_tensor(np.asarray(corpus.tokens[start: start + length], dtype=np.int64))[None]
        _, cache = model.run_with_cache(tokens, names_filter=[coder.cfg.hook_in])
        acts.append(coder.encode(cache[coder.cfg.hook_in][0]))
    return torch.cat(acts).T


def test_feature_index_matches_brute_force(built, story_model, story_corpus, dict_dir):
    from tinyinterp.dictionaries import load_dictionary

    coder = load_dictionary(dict_dir)
    acts = brute_force_features(story_model, coder, story_corpus, CFG["seq_len"])  # (d_sae, n_tokens)
    t = built.tensors
    assert t["top_values"].shape == (1, D_SAE, CFG["k"])
    torch.testing.assert_close(t["top_values"][0], torch.topk(acts, CFG["k"], dim=1).values, atol=1e-5, rtol=1e-5)
    at = acts[torch.arange(D_SAE)[:, None], t["top_positions"][0]]  # stored positions hold the stored values
    torch.testing.assert_close(at, t["top_values"][0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(t["mean"][0], acts.mean(1), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(t["std"][0], acts.std(1, unbiased=False), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(t["max"][0], acts.amax(1))
    torch.testing.assert_close(t["frac_active"][0], (acts > 0).float().mean(1))
    assert float(t["frac_active"].sum()) == pytest.approx(DICT_K, abs=1e-4)  # TopK: exactly k features per token
    # histogram: every token counted once per feature, in the bin its value falls in (features are >= 0)
    expected = np.stack([np.bincount(np.searchsorted(bin_edges(), a, side="right"), minlength=63) for a in acts.numpy()])
    assert (t["hist_counts"][0].numpy() == expected).all()
    torch.testing.assert_close(t["bottom_values"][0], torch.topk(acts, 10, dim=1, largest=False).values)
    # logit effects: the decoder row through ln_final (centred, weight) and W_U, centred over the vocabulary
    W_dec = coder.W_dec.detach()
    direction = W_dec - W_dec.mean(-1, keepdim=True)
    effect = (direction * story_model.ln_final.w) @ story_model.W_U[:, : story_model.tokenizer.vocab_size]
    effect -= effect.mean(-1, keepdim=True)
    top = torch.topk(effect, t["logit_top_tokens"].shape[-1], dim=-1)
    assert torch.equal(t["logit_top_tokens"][0].long(), top.indices)
    torch.testing.assert_close(t["logit_top_values"][0], top.values, atol=1e-4, rtol=1e-4)
    meta = built.meta
    assert meta["units"] == "features" and meta["n_layers"] == 1 and meta["d_mlp"] == D_SAE
    assert (built.path / meta["dictionary"]).resolve() == dict_dir.resolve()
    assert meta["n_tokens"] == story_corpus.n_tokens


def test_index_stops_the_forward_after_the_dictionary_layer(story_model, story_corpus, dict_dir, tmp_path):
    ran = []
    handle = story_model.blocks[1].register_forward_pre_hook(lambda *a: ran.append(1))
    try:
        build_feature_index(story_model, story_corpus, dict_dir, NeuronIndexConfig(**CFG), out_dir=tmp_path / "i",
                            progress=False)
    finally:
        handle.remove()
    assert ran == []  # a block-0 transcoder never runs block 1


def test_resume_gives_identical_index(story_model, story_corpus, dict_dir, built, tmp_path):
    out = tmp_path / "resumed"
    cfg = NeuronIndexConfig(**CFG)
    assert build_feature_index(story_model, story_corpus, dict_dir, cfg, out_dir=out, progress=False, max_shards=2) is None
    assert (out / PROGRESS_FILE).is_file()
    resumed = build_feature_index(story_model, story_corpus, dict_dir, cfg, out_dir=out, progress=False)
    assert not (out / PROGRESS_FILE).exists()
    assert set(resumed.tensors) == set(built.tensors)
    for key, value in built.tensors.items():
        assert torch.equal(value, resumed.tensors[key]), key


def test_a_retrained_dictionary_does_not_resume_an_old_build(story_model, story_corpus, dict_dir, built, tmp_path):
    out = tmp_path / "resumed"
    cfg = NeuronIndexConfig(**CFG)
    assert build_feature_index(story_model, story_corpus, dict_dir, cfg, out_dir=out, progress=False, max_shards=2) is None
    other = save_dictionary(random_transcoder(story_model, seed=7), tmp_path / "other")
    fresh = build_feature_index(story_model, story_corpus, other, cfg, out_dir=out, progress=False)
    direct = build_feature_index(story_model, story_corpus, other, cfg, out_dir=tmp_path / "direct", progress=False)
    for key, value in direct.tensors.items():
        assert torch.equal(value, fresh.tensors[key]), key


def test_load_and_queries(built, story_model, story_corpus, dict_dir):
    for where in (dict_dir, built.path):
        loaded = FeatureIndex.load(where)
        assert isinstance(loaded, FeatureIndex) and loaded.n_features == D_SAE
    generic = NeuronIndex.load(built.path)  # any index folder loads; a feature index knows its dictionary
    assert isinstance(generic, FeatureIndex)
    feature = int(generic.tensors["frac_active"][0].argmax())
    ex = generic.top_examples(0, feature, k=3, context=4, model=story_model)
    assert len(ex) == 3 and ex[0].activation >= ex[1].activation >= ex[2].activation
    for e in ex:
        assert e.activations[e.center] == pytest.approx(e.activation, abs=1e-5)  # re-run + encode matches the index
        assert all(a >= 0 for a in e.activations if not np.isnan(a))
    quant = generic.quantile_examples(0, feature, quantiles=(0.5, 0.99), model=story_model)
    assert [q.quantile for q in quant] == [0.5, 0.99]
    hist = generic.activation_histogram(0, feature)
    assert int(hist["count"].sum()) == story_corpus.n_tokens
    effects = generic.logit_effects(0, feature, n=3)
    assert len(effects["promoted"]) == 3 and effects["promoted"].effect.is_monotonic_decreasing
    assert len(generic.negative_examples(0, feature, k=2)) == 2
    assert len(generic.stats_frame()) == D_SAE
    frame = generic.find_neurons("Lily", story_model, top=5)
    assert len(frame) == 5 and (frame.layer == 0).all() and frame.score.is_monotonic_decreasing
    purity = neuron_purity(generic)
    assert purity.purity.shape == (1, D_SAE) and purity.to_frame().neuron.max() == D_SAE - 1


@pytest.fixture(scope="module")
def neuron_built(story_tokenizer, story_corpus, tmp_path_factory):
    from tests.support.story_world import make_model

    model = make_model(story_tokenizer)
    return model, build_neuron_index(model, story_corpus, tmp_path_factory.mktemp("n"), NeuronIndexConfig(**CFG),
                                     progress=False)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(layer=st.integers(0, 1), picks=st.lists(st.integers(0, 127), min_size=1, max_size=6, unique=True))
def test_a_dictionary_of_neurons_indexes_like_those_neurons(neuron_built, story_corpus, tmp_path_factory, layer, picks):
    """Feature i = ReLU(neuron picks[i]) read at mlp.hook_post, decoder row = that neuron's W_out row: the
    feature index must equal the neuron index of those neurons (values clipped at 0), logit effects included."""
    model, neurons = neuron_built
    d_mlp, d = model.cfg.d_mlp, model.cfg.d_model
    cfg = DictionaryConfig("transcoder", f"blocks.{layer}.mlp.hook_post", f"blocks.{layer}.hook_mlp_out", d_mlp, d,
                           len(picks), len(picks))
    coder = SparseCoder(cfg)
    with torch.no_grad():
        coder.W_enc[picks, torch.arange(len(picks))] = 1.0
        coder.W_dec.copy_(model.W_out[layer, picks])
    dict_dir = save_dictionary(coder, tmp_path_factory.mktemp("d"))
    feats = build_feature_index(model, story_corpus, dict_dir, NeuronIndexConfig(**CFG), progress=False).tensors
    n = {key: value[layer, picks] for key, value in neurons.tensors.items()}
    torch.testing.assert_close(feats["top_values"][0], n["top_values"].clamp(min=0), atol=1e-6, rtol=1e-6)
    # the positive half of the histogram is the neuron's; everything <= 0 lands in the feature's zero bin
    assert torch.equal(feats["hist_counts"][0][:, ZERO_BIN + 1:], n["hist_counts"][:, ZERO_BIN + 1:])
    assert torch.equal(feats["hist_counts"][0][:, ZERO_BIN], n["hist_counts"][:, : ZERO_BIN + 1].sum(-1))
    torch.testing.assert_close(feats["frac_active"][0], n["frac_active"])
    torch.testing.assert_close(feats["max"][0], n["max"].clamp(min=0))
    for key in ("logit_top_tokens", "logit_bottom_tokens"):
        assert torch.equal(feats[key][0], n[key]), key
    torch.testing.assert_close(feats["logit_top_values"][0], n["logit_top_values"], atol=1e-5, rtol=1e-5)


def test_bad_dictionaries_are_one_line_errors(story_model, story_corpus, tmp_path):
    d = story_model.cfg.d_model
    wrong_width = SparseCoder(DictionaryConfig("sae", "blocks.0.hook_resid_post", "blocks.0.hook_resid_post",
                                               d + 8, d + 8, 16, 2))
    no_hook = SparseCoder(DictionaryConfig("sae", "blocks.7.hook_resid_post", "blocks.7.hook_resid_post", d, d, 16, 2))
    for coder, message in ((wrong_width, "belongs to another model"), (no_hook, "is not a hook of this model")):
        where = save_dictionary(coder, tmp_path / message.split()[0])
        with pytest.raises(DictionaryError, match=message) as err:
            build_feature_index(story_model, story_corpus, where, progress=False)
        assert "\n" not in str(err.value)
        assert not (where / "index").exists()  # nothing written
    with pytest.raises(DictionaryError, match="no cfg.json"):
        build_feature_index(story_model, story_corpus, tmp_path, progress=False)
    with pytest.raises(Exception, match="no feature index"):
        FeatureIndex.load(tmp_path)
