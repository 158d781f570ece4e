"""Tools that observe our HookPoints without registering a torch hook see every activation.

nnsight 0.8 instruments a module by replacing its ``forward`` on the instance (no torch hooks), so
the fast paths (SDPA attention, fused LayerNorm) must notice that too: ``hook_pattern``,
``hook_attn_scores`` and ``hook_scale`` are produced as soon as anything may observe them. Here:
``NNsight(model)`` trace / save / patch / gradient at every name in ``model.hook_dict`` equals
``run_with_cache`` / ``run_with_hooks`` (1e-5), fast attention on; and the same mechanism with a
forward-replacing instrumentation of our own (runs without nnsight installed)."""

from __future__ import annotations

import pytest
import torch

TOL = 1e-5
TEXTS = ["Lily and Tom went to the park. Tom gave the ball to", "Once upon a time there was a little dog"]
# Flag sets that, together, make every HookPoint of hook_dict fire (use_attn_in excludes split q/k/v input).
FLAG_SETS = [
    {"use_attn_result": True, "use_split_qkv_input": True, "use_hook_mlp_in": True, "use_hook_tokens": True},
    {"use_attn_in": True},
]


@pytest.fixture
def model(neo_tokenizer):
    from tests.support.tl_models import build

    m = build(neo_tokenizer, preset="test-neo", seed=5, init_range=0.3)  # large enough that every patch shows
    assert all(block.attn.use_fast_attention for block in m.blocks)
    return m


def _set_flags(model, flags):
    for name, value in flags.items():
        setattr(model.cfg, name, value)


def _firing_order(model, tokens) -> list[str]:
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, return_cache_object=False)
    return list(cache)  # insertion order = the order the HookPoints fired


def _envoy(root, name: str):
    for part in name.split("."):
        root = root[int(part)] if part.isdigit() else getattr(root, part)
    return root


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b|, with equal entries (the -inf of masked scores included) counting 0."""
    a, b = a.detach().float(), b.detach().float()
    return float(torch.where(a == b, torch.zeros_like(a), (a - b).abs()).max())


def _patch(x: torch.Tensor, d_vocab: int) -> torch.Tensor:
    if not x.is_floating_point():  # hook_tokens: other token ids
        return (x + 1) % d_vocab
    # Not a per-row affine map: a LayerNorm downstream would undo that (hook_q_input, ...).
    return x * 0.5 + 0.05 * torch.cos(torch.arange(x.shape[-1], dtype=x.dtype, device=x.device))


@pytest.mark.parametrize("flags", FLAG_SETS, ids=["split_qkv+result+mlp_in+tokens", "attn_in"])
def test_nnsight_sees_saves_patches_and_differentiates_every_hook(model, flags):
    nnsight = pytest.importorskip("nnsight")
    _set_flags(model, flags)
    tokens = model.to_tokens(TEXTS)[:, :12]
    names = _firing_order(model, tokens)
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
    wrapped = nnsight.NNsight(model)

    # trace + save, every name in one pass
    saved: dict[str, torch.Tensor] = {}  # filled inside the trace (nnsight runs the block as it goes)
    with wrapped.trace(tokens):
        for name in names:
            saved[name] = _envoy(wrapped, name).output.save()
    for name in names:
        assert _diff(saved[name], cache[name]) <= TOL, name
    for name in ("blocks.0.attn.hook_pattern", "blocks.1.attn.hook_attn_scores", "blocks.0.ln1.hook_scale", "ln_final.hook_scale"):
        assert name in saved

    # patch: each name on its own, against run_with_hooks with the same edit
    with torch.no_grad():
        clean_logits = model(tokens)
    inert = []
    for name in names:
        with torch.no_grad():
            want = model.run_with_hooks(tokens, fwd_hooks=[(name, lambda x, hook: _patch(x, model.cfg.d_vocab))])
        got = {}
        with wrapped.trace(tokens):
            envoy = _envoy(wrapped, name)
            envoy.output = _patch(envoy.output, model.cfg.d_vocab)
            got["logits"] = wrapped.output.save()
        got = got["logits"]
        assert _diff(got, want) <= TOL, name
        if _diff(want, clean_logits) <= TOL:
            inert.append(name)
    # With the per-head forks, q/k/v read their own copies, so ln1's output is computed but unused.
    assert all(".ln1." in name for name in inert), inert

    # gradient of the loss at every float activation, against run_with_cache(incl_bwd=True)
    _, grad_cache = model.run_with_cache(tokens, return_type="loss", incl_bwd=True)
    # Every float activation the loss depends on has a gradient (ln1's output is unused with the forks).
    float_names = [n for n in names if cache[n].is_floating_point() and n + "_grad" in grad_cache]
    assert {n for n in names if cache[n].is_floating_point()} - set(float_names) <= set(inert)
    assert {"blocks.0.attn.hook_pattern", "blocks.1.attn.hook_attn_scores", "blocks.1.ln2.hook_scale"} <= set(float_names)
    grads: dict[str, torch.Tensor] = {}
    for name in float_names:  # one backward trace each: autograd's order is not simply reverse-forward
        with wrapped.trace(tokens):
            act = _envoy(wrapped, name).output
            loss = wrapped.output.log_softmax(-1)[:, :-1].gather(-1, tokens[:, 1:, None]).mean().neg()
            with loss.backward():
                grads[name] = act.grad.save()
    model.zero_grad(set_to_none=True)
    for name in float_names:
        want = grad_cache[name + "_grad"]
        got = grads[name]
        assert _diff(got, want) <= TOL * max(1.0, float(want.abs().max())), name


def test_flag_sets_cover_every_hook_name(model):
    tokens = model.to_tokens(TEXTS[0])
    fired = set()
    for flags in FLAG_SETS:
        _set_flags(model, flags)
        fired |= set(_firing_order(model, tokens))
        _set_flags(model, {name: False for name in flags})
    assert fired == set(model.hook_dict)


def test_a_replaced_forward_makes_the_fast_paths_produce_the_activation(model):
    """The mechanism nnsight relies on, with our own instrumentation: replace the HookPoints' forward on
    the instance (no torch hook anywhere) and record what passes through."""
    tokens = model.to_tokens(TEXTS[0])
    watched = ["blocks.0.attn.hook_pattern", "blocks.1.attn.hook_attn_scores", "blocks.0.ln1.hook_scale",
               "blocks.1.ln2.hook_scale", "ln_final.hook_scale"]
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=watched)
    seen: dict[str, torch.Tensor] = {}

    def instrument(name):
        hp = model.hook_dict[name]
        original = type(hp).forward

        def forward(x):
            seen[name] = x
            return original(hp, x) * (2.0 if name == "ln_final.hook_scale" else 1.0)

        hp.forward = forward

    for name in watched:
        instrument(name)
    assert not any(model.hook_dict[n]._forward_hooks for n in watched)
    with torch.no_grad():
        patched = model(tokens)
    assert set(seen) == set(watched)
    for name in watched:  # recorded before the one edit (the last of them)
        assert _diff(seen[name], cache[name]) <= TOL, name
    for name in watched:
        del model.hook_dict[name].forward
    # Nothing observes any more: the fast path is back and the pattern HookPoint is skipped.
    seen.clear()
    with torch.no_grad():
        clean = model(tokens)
    assert not seen
    # The replacement's edit (the final LayerNorm's scale x 2) took effect, as a run_with_hooks edit does.
    with torch.no_grad():
        want = model.run_with_hooks(tokens, fwd_hooks=[("ln_final.hook_scale", lambda x, hook: x * 2.0)])
    assert _diff(want, clean) > TOL
    assert _diff(patched, want) <= TOL
