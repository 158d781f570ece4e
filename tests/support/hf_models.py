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
