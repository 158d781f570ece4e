"""Load a Hugging Face GPT-Neo / GPT-2 checkpoint into tinyinterp's own :class:`HookedTransformer`.

The fast path for official checkpoints (``roneneldan/TinyStories-*``, ``gpt2`` … ``gpt2-xl``): our model
with SDPA attention and KV cache instead of a TransformerBridge around the HF model. Weights are read
straight from ``model.safetensors`` (sharded files too) and converted by :mod:`tinyinterp.hf_convert`;
a folder holding only ``pytorch_model.bin`` is read through ``transformers`` (which unpickles it with
``weights_only=True``). The result behaves exactly like the HF model (log-probabilities within 1e-4,
see tests/tinyinterp/test_hf_import.py) and carries ``.tokenizer`` = ``Tokenizer.from_hf(folder)``.

    >>> model = load_native("/models/TinyStories-33M")   # a save_pretrained / huggingface-cli download folder
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from tinyinterp.errors import ModelLoadError
from tinyinterp.hf_convert import config_from_hf, params_from_hf, _architecture

log = logging.getLogger(__name__)

SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"


def hf_download(name: str) -> Path:
    """Download the files of hub model ``name`` that :func:`load_native` needs; returns the local folder."""
    from huggingface_hub import list_repo_files, snapshot_download

    files = list_repo_files(name)
    weights = ["*.safetensors"] if any(f.endswith(".safetensors") for f in files) else ["pytorch_model*.bin"]
    return Path(snapshot_download(name, allow_patterns=["*.json", "*.txt", *weights]))


def _read_hf_weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if (folder / SAFETENSORS_FILE).is_file():
        return load_file(str(folder / SAFETENSORS_FILE))
    if (folder / SAFETENSORS_INDEX).is_file():
        index = json.loads((folder / SAFETENSORS_INDEX).read_text(encoding="utf-8"))
        sd: dict[str, torch.Tensor] = {}
        for shard in sorted(set(index["weight_map"].values())):
            sd.update(load_file(str(folder / shard)))
        return sd
    # Only pickled weights: let transformers read them (weights_only) and hand over its state dict.
    from transformers import AutoModelForCausalLM

    log.info("%s has no safetensors; reading its weights through transformers", folder)
    try:
        hf = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    except OSError as e:
        raise ModelLoadError(f"{folder}: could not read its weights ({str(e).splitlines()[0]})") from None
    return hf.state_dict()


def load_native(folder: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, tokenizer=None):
    """Our ``HookedTransformer`` (eval mode, with ``.tokenizer``) from a local HF GPT-Neo/GPT-2 folder."""
    from tinyinterp.model import HookedTransformer
    from tinyinterp.tokenizer import Tokenizer

    folder = Path(folder)
    config_path = folder / "config.json"
    try:
        hf_config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"{config_path}: unreadable config ({e})") from None
    arch = _architecture(hf_config)
    cfg = config_from_hf(hf_config)
    params = params_from_hf(_read_hf_weights(folder), cfg, arch, source=str(folder))
    if tokenizer is None:
        try:
            tokenizer = Tokenizer.from_hf(str(folder))
        except Exception as e:  # noqa: BLE001 - tokenizers raises bare Exceptions
            raise ModelLoadError(f"{folder}: could not load its tokenizer ({e})") from None
    with torch.device("meta"):  # skip the random init; every parameter is assigned below
        model = HookedTransformer(cfg, tokenizer=tokenizer)
    model.load_state_dict(params, assign=True)
    if cfg.tie_embeddings:
        model.unembed.weight = model.embed.weight
    left_on_meta = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left_on_meta:  # a parameter or buffer the conversion does not fill (a new model option?)
        raise ModelLoadError(f"{folder}: no value for {left_on_meta[:3]} after conversion; update tinyinterp.hf_convert")
    model.name = str(folder)
    return model.to(device=device, dtype=dtype).eval()
