"""Sampling: greedy/temperature/top-k/top-p, EOT stop, KV cache equivalence, context errors."""

import logging

import pytest
import torch

from tinyinterp.errors import TinyinterpError
from tinyinterp.models.generation import SamplingConfig, generate_tokens, sample_next


def test_kv_cache_and_recompute_give_identical_greedy_text(tiny_model):
    prompts = [[1, 2, 3], [4, 5, 6], [7, 8]]
    cached = generate_tokens(tiny_model, prompts, SamplingConfig(max_new_tokens=30, temperature=0))
    plain = generate_tokens(tiny_model, prompts, SamplingConfig(max_new_tokens=30, temperature=0, use_kv_cache=False))
    assert cached == plain
    assert all(len(out) == 30 for out in cached)


def test_batching_does_not_change_a_sequence(tiny_model):
    cfg = SamplingConfig(max_new_tokens=12, temperature=0)
    alone = generate_tokens(tiny_model, [[9, 9, 9]], cfg)[0]
    batched = generate_tokens(tiny_model, [[1, 2], [9, 9, 9], [3, 4, 5, 6]], cfg)[1]
    assert alone == batched


def test_seeded_sampling_is_reproducible(tiny_model):
    cfg = SamplingConfig(max_new_tokens=20, temperature=1.0, top_k=10, seed=3)
    assert generate_tokens(tiny_model, [[1, 2]], cfg) == generate_tokens(tiny_model, [[1, 2]], cfg)


def test_stops_at_eot(tiny_model):
    # Make token 42 (our EOT) the certain next token after a few steps by editing the unembedding bias.
    with torch.no_grad():
        tiny_model.unembed.bias[42] = 100.0
    out = generate_tokens(tiny_model, [[1, 2, 3]], SamplingConfig(max_new_tokens=10, temperature=0), eot_id=42)
    assert out == [[]]
    no_stop = SamplingConfig(max_new_tokens=4, temperature=0, stop_at_eot=False)
    assert generate_tokens(tiny_model, [[1]], no_stop, eot_id=42) == [[42, 42, 42, 42]]


def test_top_k_and_top_p_restrict_the_support():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    gen = torch.Generator().manual_seed(0)
    top1 = {sample_next(logits, SamplingConfig(top_k=1), gen).item() for _ in range(50)}
    assert top1 == {0}
    nucleus = {sample_next(logits, SamplingConfig(top_p=0.75), gen).item() for _ in range(300)}
    assert nucleus == {0, 1}
    top3 = {sample_next(logits, SamplingConfig(top_k=3), gen).item() for _ in range(500)}
    assert top3 == {0, 1, 2}


def test_prompt_longer_than_context_is_a_clear_error(tiny_model):
    with pytest.raises(TinyinterpError, match="longer than the model's context of 64"):
        generate_tokens(tiny_model, [list(range(65))], SamplingConfig(max_new_tokens=1))


def test_generation_stops_at_context_end(tiny_model):
    out = generate_tokens(tiny_model, [list(range(60))], SamplingConfig(max_new_tokens=50, temperature=0))
    assert len(out[0]) == 4


def test_bad_sampling_settings_are_rejected():
    with pytest.raises(TinyinterpError, match="top_p"):
        SamplingConfig(top_p=1.5)
    with pytest.raises(TinyinterpError, match="temperature"):
        SamplingConfig(temperature=-1)


@pytest.mark.parametrize("temperature", [float("nan"), float("inf"), float("-inf"), -0.5])
def test_non_finite_or_negative_temperature_is_one_line_error(temperature):
    with pytest.raises(TinyinterpError, match="--temperature must be a finite number >= 0"):
        SamplingConfig(temperature=temperature)


def test_prompt_filling_the_context_warns_that_max_new_tokens_is_capped(tiny_model, caplog):
    n_ctx = tiny_model.cfg.n_ctx
    with caplog.at_level(logging.WARNING, logger="tinyinterp.models.generation"):
        out = generate_tokens(tiny_model, [[1] * n_ctx], SamplingConfig(max_new_tokens=5, temperature=0))
    assert out == [[]]
    assert f"max_new_tokens capped from 5 to 0: the longest prompt has {n_ctx} tokens" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tinyinterp.models.generation"):
        generate_tokens(tiny_model, [[1] * (n_ctx - 5)], SamplingConfig(max_new_tokens=5, temperature=0))
    assert "capped" not in caplog.text  # room enough: no warning


def test_one_bos_policy_and_one_sampler_for_the_cli_and_model_generate(capsys, tiny_run):
    """`tinyinterp generate` and `model.generate` condition a prompt the same way (<|endoftext|> first) and
    sample the same tokens for the same seed, greedy or not."""
    import json

    import tinyinterp
    from tinyinterp.cli import main
    from tinyinterp.models.generation import generate, prompt_ids

    model = tinyinterp.load(tiny_run)
    tok = model.tokenizer
    prompt = "Once upon a time"
    assert prompt_ids(tok, prompt) == [tok.eot_id] + tok.encode(prompt) == model.to_tokens(prompt)[0].tolist()
    for flags, kwargs in ((["--temperature", "0"], {"do_sample": False}),
                          (["--temperature", "0.8", "--seed", "7"], {"temperature": 0.8, "seed": 7})):
        assert main(["generate", str(tiny_run), prompt, "--max-new-tokens", "12", "--json", *flags]) == 0
        completion = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["completion"]
        tokens = model.generate(prompt, max_new_tokens=12, verbose=False, return_type="tokens", **kwargs)[0].tolist()
        new = tokens[len(prompt_ids(tok, prompt)):]
        new = new[: new.index(tok.eot_id)] if tok.eot_id in new else new
        assert completion == tok.decode(new)
        assert generate(model, [prompt], SamplingConfig(max_new_tokens=12, temperature=kwargs.get("temperature", 0),
                                                        seed=kwargs.get("seed")))[0] == completion
