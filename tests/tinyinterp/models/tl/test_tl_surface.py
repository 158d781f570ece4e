"""The rest of TransformerLens's surface on our model, each piece against the TransformerBridge of the
model's Hugging Face export (both with TL's default weight processing): the per-head q/k/v input forks
(``set_use_split_qkv_input`` / ``set_use_attn_in``) and ``hook_mlp_in``, every ``patching.get_act_patch_*``
sweep and direct path patching, the ActivationCache helpers not covered by test_tl_conformance.py,
``SVDInterpreter`` for every matrix type, and ``transformer_lens.utilities`` helpers that take a model.

The pair is GPT-2-style: TL 4.3's GPT-Neo bridge has no pre-q/k/v fork (its ``AttentionBridge`` refuses
``use_split_qkv_input``), the GPT-2 one (``JointQKVAttentionBridge``) has. Weights are drawn with std 0.3
so that patching a single activation moves the metric by far more than the tolerance."""

from __future__ import annotations

import contextlib
import io
from functools import partial

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformer_lens import patching
from transformer_lens import utilities as tl_utils
from transformer_lens.ActivationCache import ActivationCache
from transformer_lens.SVDInterpreter import SVDInterpreter

from tinyinterp.errors import TinyinterpError
from tinyinterp.models.zoo import arch_fields

from tests.support.tl_models import bridged_pair, build, record_diff

# Short, so that the (layer, head, dest, src) sweep stays a few hundred forwards per model.
CLEAN = "Lily and Tom. Tom helped"
CORRUPT = "Lily and Tom. Lily helped"
TOL = 1e-4
SURFACE: dict[str, float] = {}


@pytest.fixture(scope="module")
def pair(neo_tokenizer, tmp_path_factory):
    """(our processed GPT-2-style model, the bridge of its export in compatibility mode)."""
    return bridged_pair(neo_tokenizer, tmp_path_factory, preset="test-neo", seed=11, init_range=0.3, **arch_fields("gpt2", 2))


@pytest.fixture(scope="module")
def prompts(pair):
    ours, _ = pair
    clean, corrupt = ours.to_tokens(CLEAN), ours.to_tokens(CORRUPT)
    assert clean.shape == corrupt.shape and (clean != corrupt).sum() == 1
    lily, tom = ours.to_single_token(" Lily"), ours.to_single_token(" Tom")

    def metric(logits):
        return logits[0, -1, lily] - logits[0, -1, tom]

    return clean, corrupt, metric


@pytest.fixture(scope="module")
def caches(pair, prompts):
    """{"ours"/"bridge": (clean cache, corrupt cache)}."""
    clean, corrupt, _ = prompts
    return {name: (model.run_with_cache(clean)[1], model.run_with_cache(corrupt)[1]) for name, model in zip(("ours", "bridge"), pair)}


def _diff(name: str, a: torch.Tensor, b: torch.Tensor) -> float:
    return record_diff(SURFACE, name, a, b)


@contextlib.contextmanager
def _flags(model, **flags):
    """Turn TL's hook flags on through the model's own setters, and off again."""
    for name, value in flags.items():
        getattr(model, f"set_{name}")(value)
    try:
        yield
    finally:
        for name in flags:
            getattr(model, f"set_{name}")(False)


# --- forks: set_use_split_qkv_input / set_use_attn_in / set_use_hook_mlp_in ----------------------------


@pytest.mark.parametrize("fork", ["use_split_qkv_input", "use_attn_in"])
def test_forks_fire_the_bridges_hooks_with_its_values(pair, prompts, fork):
    clean = prompts[0]
    ours, bridge = pair
    plain = ours(clean)
    results = []
    for model in pair:
        with _flags(model, **{fork: True}, use_hook_mlp_in=True):
            results.append(model.run_with_cache(clean))
    (logits, cache), (bridge_logits, bridge_cache) = results
    names = (["q_input", "k_input", "v_input"] if fork == "use_split_qkv_input" else ["attn_in"])
    H, d = ours.cfg.n_heads, ours.cfg.d_model
    for layer in range(ours.cfg.n_layers):
        for name in names:
            # Both names, as on the bridge: the legacy block-level one and the attention's own.
            for key in (f"blocks.{layer}.hook_{name}", f"blocks.{layer}.attn.hook_{name}"):
                assert cache[key].shape == (1, clean.shape[1], H, d)
                assert _diff(f"{fork}: hook_{name}", cache[key], bridge_cache[key]) < TOL
        # The fork copies the PRE-norm residual.
        assert torch.equal(cache[f"blocks.{layer}.attn.hook_{names[0]}"][:, :, 0], cache["resid_pre", layer])
        assert _diff("hook_mlp_in", cache[f"blocks.{layer}.hook_mlp_in"], bridge_cache[f"blocks.{layer}.hook_mlp_in"]) < TOL
        assert torch.equal(cache[f"blocks.{layer}.hook_mlp_in"], cache["resid_mid", layer])
        assert torch.equal(cache[names[-1], layer], cache[f"blocks.{layer}.hook_{names[-1]}"])  # TL's shorthand
    shared = [k for k in cache.keys() if k in bridge_cache.cache_dict]
    assert max(_diff(f"{fork}: every shared hook", cache[k], bridge_cache[k]) for k in shared) < TOL
    # Forking changes nothing by itself (processed weights: logits up to a per-position constant).
    assert (logits - plain).abs().max() < 1e-4
    centred = [x - x.mean(-1, keepdim=True) for x in (logits, bridge_logits)]
    assert _diff(f"{fork}: logits", *centred) < TOL


def test_forks_cost_nothing_when_off(pair, prompts):
    ours, _ = pair
    _, cache = ours.run_with_cache(prompts[0])
    assert not [k for k in cache.keys() if k.endswith(("_input", "attn_in", "mlp_in"))]
    with _flags(ours, use_split_qkv_input=True):
        with pytest.raises(TinyinterpError, match="exclusive"):
            ours.set_use_attn_in(True)
    assert not ours.cfg.use_split_qkv_input and not ours.cfg.use_attn_in


def test_fork_hooks_edit_only_their_own_path(pair, prompts):
    """Zeroing head 0's q input changes only head 0's queries; k, v and the other heads stay put."""
    ours, _ = pair
    clean = prompts[0]
    _, base = ours.run_with_cache(clean)

    def zero_head0(x, hook):
        x[:, :, 0] = 0
        return x

    with _flags(ours, use_split_qkv_input=True), ours.hooks(fwd_hooks=[("blocks.1.attn.hook_q_input", zero_head0)]):
        _, edited = ours.run_with_cache(clean)
    assert not torch.allclose(edited["q", 1][:, :, 0], base["q", 1][:, :, 0])
    assert torch.allclose(edited["q", 1][:, :, 1:], base["q", 1][:, :, 1:], atol=1e-5)
    assert torch.allclose(edited["k", 1], base["k", 1], atol=1e-5)
    assert torch.allclose(edited["v", 1], base["v", 1], atol=1e-5)


@pytest.fixture(scope="module")
def neo_processed(neo_tokenizer):
    return build(neo_tokenizer, preset="test-neo", seed=3, init_range=0.3).process_weights()


@settings(max_examples=12, deadline=None)
@given(length=st.integers(2, 24), split=st.integers(1, 23), seed=st.integers(0, 2**16))
def test_forks_work_on_gpt_neo_local_layers_and_the_kv_cache(neo_processed, length, split, seed):
    """No bridge to compare with here (TL's GPT-Neo bridge has no fork): the forked forward must equal
    the fast path, on local layers within and beyond the 8-token window and with a KV cache."""
    model = neo_processed
    split = min(split, length - 1)
    tokens = torch.randint(0, model.cfg.d_vocab, (2, length), generator=torch.Generator().manual_seed(seed))
    fast = model(tokens)
    for fork in ("use_split_qkv_input", "use_attn_in"):
        with _flags(model, **{fork: True}, use_hook_mlp_in=True):
            assert (model(tokens) - fast).abs().max() < 1e-4
            kv = model.new_kv_cache()
            steps = torch.cat([model(tokens[:, :split], kv_cache=kv), model(tokens[:, split:], kv_cache=kv)], dim=1)
            assert (steps - fast).abs().max() < 1e-4


# --- patching -----------------------------------------------------------------------------------------

SWEEPS = {
    # Each *_every sweep runs its per-type functions (out/q/k/v/pattern, resid_pre/attn_out/mlp_out).
    "get_act_patch_block_every": (3, "layer", "pos"),
    "get_act_patch_attn_head_all_pos_every": (5, "layer", "head"),
    "get_act_patch_attn_head_by_pos_every": (5, "layer", "pos", "head"),
    "get_act_patch_attn_head_pattern_dest_src_pos": ("layer", "head", "pos", "pos"),
}


@pytest.mark.parametrize("sweep", sorted(SWEEPS))
def test_activation_patching_sweeps(pair, prompts, caches, sweep):
    clean, corrupt, metric = prompts
    ours = pair[0]
    sizes = {"layer": ours.cfg.n_layers, "head": ours.cfg.n_heads, "pos": clean.shape[1]}
    out = [getattr(patching, sweep)(model, corrupt, caches[name][0], metric) for name, model in zip(("ours", "bridge"), pair)]
    assert out[0].shape == tuple(sizes.get(a, a) for a in SWEEPS[sweep])
    # The sweep measured something: patches move the metric by orders of magnitude more than TOL.
    assert out[0].max() - out[0].min() > 100 * TOL
    assert _diff(f"patching.{sweep}", *out) < TOL


def test_resid_mid_patching(pair, prompts, caches):
    """``get_act_patch_resid_mid`` on our model patches the residual stream itself (the legacy
    HookedTransformer meaning): patching resid_mid[l] then equals patching resid_pre[l + 1]. TL 4.3's
    GPT-2 bridge aliases ``hook_resid_mid`` to ``ln2.hook_in``, so there a patch reaches only the MLP's
    input and the residual carried past the MLP stays corrupted — which is what our ``hook_mlp_in`` is
    for; the two agree exactly."""
    clean, corrupt, metric = prompts
    ours, bridge = pair
    mid = patching.get_act_patch_resid_mid(ours, corrupt, caches["ours"][0], metric)
    pre = patching.get_act_patch_resid_pre(ours, corrupt, caches["ours"][0], metric)
    assert mid.shape == (ours.cfg.n_layers, clean.shape[1])
    assert _diff("resid_mid[l] == resid_pre[l+1] (ours)", mid[:-1], pre[1:]) < TOL
    mlp_in_patch = partial(
        patching.generic_activation_patch, patch_setter=patching.layer_pos_patch_setter,
        activation_name="mlp_in", index_axis_names=("layer", "pos"),
    )
    with _flags(ours, use_hook_mlp_in=True):
        ours_mlp_in = mlp_in_patch(ours, corrupt, ours.run_with_cache(clean)[1], metric)
    with _flags(bridge, use_hook_mlp_in=True):
        bridge_mlp_in = mlp_in_patch(bridge, corrupt, bridge.run_with_cache(clean)[1], metric)
    bridge_mid = patching.get_act_patch_resid_mid(bridge, corrupt, caches["bridge"][0], metric)
    assert _diff("patching mlp_in (generic_activation_patch)", ours_mlp_in, bridge_mlp_in) < TOL
    assert _diff("ours mlp_in == bridge resid_mid", ours_mlp_in, bridge_mid) < TOL
    assert (mid - ours_mlp_in).abs().max() > 100 * TOL  # the two meanings really differ on this model


@pytest.mark.parametrize("component", ["q", "k", "v"])
def test_direct_path_patching(pair, prompts, caches, component):
    if not hasattr(patching, "get_act_patch_direct_path"):
        pytest.skip("this TransformerLens (3.x) has no direct-path patching")
    _, corrupt, metric = prompts
    ours = pair[0]
    out = [
        patching.get_act_patch_direct_path(
            model, corrupt, caches[name][0], caches[name][1], metric, src_layer=0, src_head=1, component=component, verbose=False
        )
        for name, model in zip(("ours", "bridge"), pair)
    ]
    assert out[0].shape == (ours.cfg.n_layers, ours.cfg.n_heads)
    baseline = metric(ours(corrupt)).item()
    assert (out[0][1] - baseline).abs().max() > 10 * TOL  # the path carries signal
    assert not ours.cfg.use_split_qkv_input  # the sweep restored our flags
    assert _diff(f"patching.get_act_patch_direct_path({component})", *out) < TOL


def test_direct_path_patching_all_sources(pair, prompts, caches):
    if not hasattr(patching, "get_act_patch_direct_path_all_sources"):
        pytest.skip("this TransformerLens (3.x) has no direct-path patching")
    _, corrupt, metric = prompts
    out = [
        patching.get_act_patch_direct_path_all_sources(model, corrupt, caches[name][0], caches[name][1], metric, component="v", verbose=False)
        for name, model in zip(("ours", "bridge"), pair)
    ]
    n, h = pair[0].cfg.n_layers, pair[0].cfg.n_heads
    assert out[0].shape == (n, h, n, h)
    assert _diff("patching.get_act_patch_direct_path_all_sources(v)", *out) < TOL


# --- ActivationCache helpers ---------------------------------------------------------------------------

CACHE_CALLS = {
    "stack_neuron_results": lambda c: c.stack_neuron_results(2, pos_slice=-1),
    "stack_neuron_results(neuron_slice)": lambda c: c.stack_neuron_results(2, pos_slice=-1, neuron_slice=[0, 3, 5]),
    "get_neuron_results": lambda c: c.get_neuron_results(1, neuron_slice=[1, 2], pos_slice=-1),
    "stack_neuron_results(apply_ln)": lambda c: c.stack_neuron_results(1, pos_slice=-1, apply_ln=True),
    "stack_activation(pattern)": lambda c: c.stack_activation("pattern"),
    "stack_activation(scale, ln2)": lambda c: c.stack_activation("scale", sublayer_type="ln2"),
    "accumulated_resid(mlp_input, incl_mid)": lambda c: c.accumulated_resid(layer=1, incl_mid=True, mlp_input=True, apply_ln=True, pos_slice=-1),
    "decompose_resid(mode=attn)": lambda c: c.decompose_resid(layer=1, mode="attn", pos_slice=-1),
    "stack_head_results(apply_ln)": lambda c: c.stack_head_results(layer=2, pos_slice=-1, apply_ln=True),
    "get_full_resid_decomposition(mlp_input)": lambda c: c.get_full_resid_decomposition(layer=1, mlp_input=True, expand_neurons=True, apply_ln=True, pos_slice=-1),
    "logit_attrs(incorrect_tokens)": lambda c: c.logit_attrs(c.decompose_resid(pos_slice=-1), tokens=torch.tensor([5]), incorrect_tokens=torch.tensor([9]), pos_slice=-1),
    "logit_lens": lambda c: c.logit_lens(targets=torch.tensor([5])).values,
    "apply_slice_to_batch_dim": lambda c: c.apply_slice_to_batch_dim(0)["resid_post", 1],
    "to(cpu)": lambda c: c.to("cpu")["z", 0],
}


@pytest.mark.parametrize("call", sorted(CACHE_CALLS))
def test_activation_cache_helpers(pair, caches, call):
    method = call.split("(")[0]
    if not hasattr(ActivationCache, method):
        pytest.skip(f"this TransformerLens (3.x) ActivationCache has no {method}")
    out = [CACHE_CALLS[call](caches[name][0]) for name in ("ours", "bridge")]
    assert out[0].shape == out[1].shape
    assert _diff(f"ActivationCache.{call}", *out) < TOL


def test_compute_head_results_remove_batch_dim_and_autodiff(pair, prompts):
    """Cache methods that change the cache: each side gets its own fresh cache."""
    clean = prompts[0]
    results = []
    for model in pair:
        _, cache = model.run_with_cache(clean)
        assert "blocks.1.attn.hook_result" not in cache.cache_dict
        cache.compute_head_results()
        head_results = cache["result", 1]
        single = ActivationCache(dict(cache.cache_dict), model).remove_batch_dim()
        assert not single.has_batch_dim
        try:
            cache.toggle_autodiff(False)  # TL's toggle_autodiff flips torch's global grad mode
            assert not torch.is_grad_enabled()
        finally:
            cache.toggle_autodiff(True)
        results.append((head_results, single["resid_pre", 1]))
    assert _diff("ActivationCache.compute_head_results", results[0][0], results[1][0]) < TOL
    assert _diff("ActivationCache.remove_batch_dim", results[0][1], results[1][1]) < TOL
    # compute_head_results equals what the model writes with use_attn_result on.
    ours = pair[0]
    ours.set_use_attn_result(True)
    try:
        _, direct = ours.run_with_cache(clean, names_filter=lambda n: n.endswith("hook_result"))
    finally:
        ours.set_use_attn_result(False)
    assert (direct["result", 1] - results[0][0]).abs().max() < 1e-5


def test_attn_scores_mask_and_values(pair, caches):
    ours_scores, bridge_scores = (caches[name][0]["attn_scores", 1] for name in ("ours", "bridge"))
    masked = torch.isinf(ours_scores)
    assert torch.equal(masked, torch.isinf(bridge_scores)) and masked.any()
    assert _diff("cache['attn_scores']", ours_scores[~masked], bridge_scores[~masked]) < TOL


@pytest.mark.parametrize("vector_type", ["OV", "w_in", "w_out"])
def test_svd_interpreter(pair, vector_type):
    head = 2 if vector_type == "OV" else None
    vecs = [SVDInterpreter(m).get_singular_vectors(vector_type, layer_index=1, head_index=head, num_vectors=4) for m in pair]
    # Singular vectors are defined up to sign.
    assert _diff(f"SVDInterpreter {vector_type} (|.|)", vecs[0].abs(), vecs[1].abs()) < TOL


# --- transformer_lens.utilities helpers that take a model ----------------------------------------------


def test_utilities_with_a_model(pair, prompts, caches):
    clean = prompts[0]
    logits = [m(clean) for m in pair]
    for per_token in (False, True):
        losses = [tl_utils.lm_cross_entropy_loss(lg, clean, per_token=per_token) for lg in logits]
        assert _diff("utilities.lm_cross_entropy_loss", *losses) < TOL
    assert _diff("utilities.lm_accuracy", *[tl_utils.lm_accuracy(lg, clean) for lg in logits]) < TOL
    assert torch.allclose(tl_utils.lm_cross_entropy_loss(logits[0], clean), pair[0](clean, return_type="loss"))
    printed = []
    for model in pair:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            tl_utils.test_prompt(CLEAN, " Lily", model, top_k=3)
        printed.append(buf.getvalue())
    assert "Lily" in printed[0] and printed[0] == printed[1]
    for args in (("resid_mid", 1), ("q", 1), ("scale", 1, "ln2"), ("normalized", 0, "ln1"), ("post", 1), ("z", 0)):
        name = tl_utils.get_act_name(*args)
        assert _diff(f"utilities.get_act_name{args}", caches["ours"][0][name], caches["bridge"][0][name]) < TOL
    scores = [tl_utils.composition_scores(m.OV[0], m.QK[1]) for m in pair]
    assert _diff("utilities.composition_scores", *scores) < TOL


# --- transformer_lens.tools.analysis -------------------------------------------------------------------


@pytest.mark.parametrize("unit", ["component", "head"])
def test_direct_logit_attribution_tool(pair, prompts, unit):
    from transformer_lens.tools.analysis import direct_logit_attribution

    clean = prompts[0]
    lily, tom = pair[0].to_single_token(" Lily"), pair[0].to_single_token(" Tom")
    out = [direct_logit_attribution(m, clean, answer_tokens=lily, incorrect_tokens=tom, unit=unit) for m in pair]
    assert out[0].labels == out[1].labels
    assert _diff(f"tools.analysis.direct_logit_attribution({unit})", out[0].attribution, out[1].attribution) < TOL


@pytest.mark.parametrize("granularity", ["node", "edge"])
def test_attribution_patching_tool(pair, prompts, granularity):
    """Edge attribution differentiates through the per-head q/k/v input forks."""
    from transformer_lens.tools.analysis import EdgeAttributionConfig, attribution_patch

    clean, corrupt, metric = prompts
    try:
        config = EdgeAttributionConfig(granularity=granularity)
    except NotImplementedError:  # TL 3.x scores nodes only
        pytest.skip(f"this TransformerLens (3.x) has no granularity={granularity!r} attribution patching")
    out = [attribution_patch(m, clean, corrupt, metric, config) for m in pair]
    for scores in ("node_scores", "edge_scores"):
        ours, theirs = getattr(out[0], scores), getattr(out[1], scores)
        assert ours.keys() == theirs.keys()
        if ours:
            keys = list(ours)
            stacked = [torch.stack([torch.as_tensor(d[k]).float() for k in keys]) for d in (ours, theirs)]
            assert stacked[0].abs().max() > 100 * TOL
            assert _diff(f"tools.analysis.attribution_patch({granularity}).{scores}", *stacked) < TOL
    assert not pair[0].cfg.use_split_qkv_input and not pair[0].cfg.use_attn_in


# --- model methods TL users reach for ------------------------------------------------------------------


def test_start_and_stop_at_layer(pair, prompts):
    clean = prompts[0]
    ours, bridge = pair
    logits, cache = ours.run_with_cache(clean)
    for layer in (0, 1, -1):
        stopped = ours(clean, stop_at_layer=layer)
        assert (stopped - cache["resid_pre", layer % ours.cfg.n_layers]).abs().max() < 1e-5
        assert _diff("forward(stop_at_layer)", stopped, bridge(clean, stop_at_layer=layer)) < TOL
    resumed = ours(cache["resid_pre", 1], start_at_layer=1)
    assert (resumed - logits).abs().max() < 1e-5
    # Only the blocks that ran fire their hooks.
    _, partial_cache = ours.run_with_cache(cache["resid_pre", 1], start_at_layer=1)
    assert "blocks.0.hook_resid_pre" not in partial_cache.cache_dict and "blocks.1.hook_resid_pre" in partial_cache.cache_dict
    loss = ours(cache["resid_pre", 1], start_at_layer=1, return_type="loss", targets=clean)
    assert torch.allclose(loss, torch.nn.functional.cross_entropy(logits[0], clean[0]), atol=1e-5)
    with pytest.raises(TinyinterpError, match="start_at_layer"):
        ours(cache["resid_pre", 1], start_at_layer=1, return_type="loss")


def test_loss_fn_and_single_str_token(pair, prompts):
    clean = prompts[0]
    ours, bridge = pair
    logits = ours(clean)
    assert torch.allclose(ours.loss_fn(logits, clean), ours(clean, return_type="loss"))
    assert _diff("loss_fn(per_token)", ours.loss_fn(logits, clean, per_token=True), bridge.loss_fn(bridge(clean), clean, per_token=True)) < TOL
    lily = ours.to_single_token(" Lily")
    assert ours.to_single_str_token(lily) == " Lily" == bridge.to_single_str_token(lily)
    with pytest.raises(TinyinterpError, match="to_single_str_token"):
        ours.to_single_str_token(ours.cfg.d_vocab)


def test_zz_report(pair):
    """Print the max differences (read by the closing note)."""
    assert SURFACE, "run the whole module"
    for name, d in sorted(SURFACE.items()):
        print(f"surface: {name}: max |ours - bridge| = {d:.2e}")
