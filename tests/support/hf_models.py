"""Random-init GPT-2 / GPT-Neo models saved as local Hugging Face folders (no network)."""

from __future__ import annotations

from pathlib import Path


def save_tiny_hf_model(out_dir: Path, arch: str, tokenizer_json: Path, seed: int = 0) -> Path:
    """Save a 2-layer random ``arch`` ("gpt2" or "gpt-neo") model plus the GPT-2 tokenizer into ``out_dir``."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, GPTNeoConfig, GPTNeoForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(seed)
    if arch == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=64, vocab_size=50257))
    elif arch == "gpt-neo":
        config = GPTNeoConfig(
            hidden_size=32, num_layers=2, num_heads=4, max_position_embeddings=64, vocab_size=50257,
            attention_types=[[["global", "local"], 1]], window_size=16,
        )
        model = GPTNeoForCausalLM(config)
    else:
        raise ValueError(arch)
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    tok = PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_json), eos_token="<|endoftext|>")
    tok.save_pretrained(out_dir)
    return out_dir


# Official configurations (config.json of the hub checkpoints), as keyword arguments of the HF config
# classes. Tests build random-init models from them; `overrides` shrink what a test is not about.
OFFICIAL_HF_CONFIGS = {
    "TinyStories-1M": dict(
        model_type="gpt_neo", hidden_size=64, num_layers=8, num_heads=16, attention_types=[[["global", "local"], 4]],
        window_size=256, max_position_embeddings=2048, vocab_size=50257, intermediate_size=None,
        activation_function="gelu_new", layer_norm_epsilon=1e-5, bos_token_id=50256, eos_token_id=50256,
    ),
    "TinyStories-33M": dict(
        model_type="gpt_neo", hidden_size=768, num_layers=4, num_heads=16, attention_types=[[["global", "local"], 2]],
        window_size=256, max_position_embeddings=2048, vocab_size=50257, intermediate_size=None,
        activation_function="gelu_new", layer_norm_epsilon=1e-5, bos_token_id=50256, eos_token_id=50256,
    ),
    "TinyStories-1Layer-21M": dict(
        model_type="gpt_neo", hidden_size=1024, num_layers=1, num_heads=16, attention_types=[[["global"], 1]],
        window_size=256, max_position_embeddings=2048, vocab_size=50257, intermediate_size=None,
        activation_function="gelu_new", layer_norm_epsilon=1e-5, bos_token_id=50256, eos_token_id=50256,
    ),
    # gpt2-xl's width (n_layer is 48 in the real one; tests use fewer layers).
    "gpt2-xl-width": dict(
        model_type="gpt2", n_embd=1600, n_layer=2, n_head=25, n_positions=1024, vocab_size=50257,
        activation_function="gelu_new", layer_norm_epsilon=1e-5, bos_token_id=50256, eos_token_id=50256,
    ),
}


def randomize_(model, seed: int = 0) -> None:
    """Give every parameter a non-trivial value (HF init leaves biases at 0 and LayerNorms at 1, which would
    hide bias and LayerNorm-folding mistakes): linear weights N(0, 1/fan_in), embeddings N(0, 0.1²),
    biases N(0, 0.1²), LayerNorm weights 1 + N(0, 0.2²)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    conv1d = model.config.model_type == "gpt2"  # GPT-2's Conv1D stores (in, out); nn.Linear (out, in)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if "ln" in name.split(".")[-2] and name.endswith("weight"):
                p.copy_(1 + 0.2 * noise)
            elif name.endswith("bias") or "wte" in name or "wpe" in name:
                p.copy_(0.1 * noise)
            else:
                fan_in = p.shape[0] if conv1d else p.shape[1]
                if name.endswith(("q_proj.weight", "k_proj.weight")):
                    # GPT-Neo does not scale scores by 1/sqrt(d_head); trained models learn small q/k instead.
                    # Without this, scores of std ~sqrt(d_head) make softmax one-hot and float32 noise decisive.
                    fan_in *= (model.config.hidden_size // model.config.num_heads) ** 0.5  # scores of std ~1
                p.copy_(noise / fan_in**0.5)


def save_official_hf_model(out_dir: Path, name: str, seed: int = 0, tokenizer=None, tokenizer_json: Path | None = None,
                           **overrides) -> Path:
    """Save a random-init model with the official configuration ``name`` (see ``OFFICIAL_HF_CONFIGS``),
    ``overrides`` applied, plus a tokenizer: ``tokenizer`` (a tinyinterp Tokenizer) or a tokenizer.json."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, GPTNeoConfig, GPTNeoForCausalLM, PreTrainedTokenizerFast

    spec = {**OFFICIAL_HF_CONFIGS[name], **overrides}
    model_type = spec.pop("model_type")
    torch.manual_seed(seed)
    if model_type == "gpt_neo":
        model = GPTNeoForCausalLM(GPTNeoConfig(**spec))
    else:
        model = GPT2LMHeadModel(GPT2Config(**spec))
    randomize_(model, seed)
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    if tokenizer is not None:
        fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer.hf, eos_token=tokenizer.eot_token)
    else:
        fast = PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_json), eos_token="<|endoftext|>")
    fast.save_pretrained(out_dir)
    return out_dir


def compare_caches(ours, theirs, arch: str) -> float:
    """Max difference over every hook both caches hold; hook_attn_scores compared where unmasked."""
    import torch

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


# ----- small checkpoints written by hand (hostile-folder tests) --------------------------------------------


def tiny_hf_checkpoint(model_type: str, seed: int = 0, vocab_size: int = 64) -> tuple[dict, dict]:
    """``(config.json dict, state dict)`` of a 2-layer, 8-wide random GPT-2 or GPT-Neo model as
    ``save_pretrained`` writes it (tied ``lm_head`` left out)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, GPTNeoConfig, GPTNeoForCausalLM

    torch.manual_seed(seed)
    if model_type == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(n_embd=8, n_layer=2, n_head=2, n_positions=16, vocab_size=vocab_size))
    else:
        model = GPTNeoForCausalLM(GPTNeoConfig(
            hidden_size=8, num_layers=2, num_heads=2, max_position_embeddings=16, vocab_size=vocab_size,
            attention_types=[[["global", "local"], 1]], window_size=4,
        ))
    randomize_(model, seed)
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    return model.config.to_dict(), sd


def write_hf_folder(folder: Path, config: dict, tensors: dict, tokenizer_json: Path | None = None) -> Path:
    """A Hugging Face folder holding exactly ``config`` (any JSON value), ``tensors`` as model.safetensors
    and, if given, the tokenizer file."""
    import json
    import shutil

    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    save_file(tensors, str(folder / "model.safetensors"))
    if tokenizer_json is not None:
        shutil.copy(tokenizer_json, folder / "tokenizer.json")
    return folder
