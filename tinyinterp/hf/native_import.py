"""Load a Hugging Face GPT-Neo / GPT-2 checkpoint into tinyinterp's own :class:`HookedTransformer`.

The fast path for official checkpoints (``roneneldan/TinyStories-*``, ``gpt2`` … ``gpt2-xl``): our model
with SDPA attention and KV cache instead of a TransformerBridge around the HF model. The folder is
untrusted input, checked in this order before anything is allocated:

1. ``config.json``: every size typed and bounded (:mod:`tinyinterp.hf.family`);
2. the weight files' headers (no data read): every tensor the config implies present, nothing else,
   each with the implied shape and a float dtype (:func:`tinyinterp.hf.convert.check_against_config`);
3. only then: a well-formed checkpoint with an option we cannot express raises
   :class:`UnsupportedArchitectureError` (the loader's one cue to use the bridge);
4. the tokenizer covers the model's vocabulary; the tensors are read and must be finite.

The result behaves exactly like the HF model (log-probabilities within 1e-4, see
tests/tinyinterp/hf/test_native_import.py) and carries ``.tokenizer`` = ``Tokenizer.from_hf(folder)``.

    >>> model = load_native("/models/TinyStories-33M")   # a save_pretrained / huggingface-cli download folder
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tinyinterp.models.config import ModelConfig
from tinyinterp.errors import ModelLoadError
from tinyinterp.hf.convert import check_against_config, params_from_hf
from tinyinterp.hf.families import family_for_hf_config
from tinyinterp.hf.family import BadCheckpointError, ConfigReader, UnsupportedArchitectureError
from tinyinterp.hf.weights import read_headers, read_tensors, weight_files


def read_hf_config(folder: Path) -> dict:
    """``folder/config.json`` as a dict, or one line saying why not."""
    path = folder / "config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:
        raise BadCheckpointError(f"{path}: unreadable config ({type(e).__name__})") from None
    if not isinstance(data, dict):
        raise BadCheckpointError(f"{path}: not a JSON object")
    return data


def check_tokenizer(tokenizer, d_vocab: int, source: str) -> None:
    """A tokenizer smaller than the model would decode sampled ids it does not have: refuse at load."""
    if tokenizer.vocab_size < d_vocab:
        raise BadCheckpointError(
            f"{source}: the tokenizer has {tokenizer.vocab_size} tokens but the model's vocabulary is {d_vocab}; "
            "the folder's tokenizer files do not belong to these weights"
        )


def load_native(folder: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                tokenizer=None, name: str | None = None):
    """Our ``HookedTransformer`` (eval mode, with ``.tokenizer``) from a local HF GPT-Neo/GPT-2 folder;
    ``name`` (default: the folder) is what ``model.name`` shows."""
    from tinyinterp.models.transformer import HookedTransformer
    from tinyinterp.data.tokenizer import Tokenizer

    folder = Path(folder)
    source = str(folder)
    hf_config = read_hf_config(folder)
    family = family_for_hf_config(hf_config, source)
    read = ConfigReader(hf_config, source)
    cfg = ModelConfig(**family.config_fields(read))
    files = weight_files(folder)
    check_against_config(read_headers(files), cfg, family, source)
    if read.unsupported:  # well-formed, checked: the bridge may load it
        raise UnsupportedArchitectureError(f"{source}: {read.unsupported[0]}")
    if tokenizer is None:
        try:
            tokenizer = Tokenizer.from_hf(str(folder))
        except Exception as e:  # noqa: BLE001 - tokenizers raises bare Exceptions
            raise ModelLoadError(f"{folder}: could not load its tokenizer ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    check_tokenizer(tokenizer, cfg.d_vocab, source)
    params = params_from_hf(read_tensors(files), cfg, family, source=source)
    with torch.device("meta"):  # skip the random init; every parameter is assigned below
        model = HookedTransformer(cfg, tokenizer=tokenizer)
    model.load_state_dict(params, assign=True)
    if cfg.tie_embeddings:
        model.unembed.weight = model.embed.weight
    left_on_meta = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left_on_meta:  # a parameter or buffer the conversion does not fill (a new model option?)
        raise ModelLoadError(f"{folder}: no value for {left_on_meta[:3]} after conversion; update tinyinterp.hf.convert")
    model.name = name or source
    return model.to(device=device, dtype=dtype).eval()
