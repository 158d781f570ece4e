"""``tinyinterp.load``: one entry point for every model tinyinterp can look inside.

    >>> import tinyinterp
    >>> model = tinyinterp.load("runs/demo")                      # our run directory
    >>> model = tinyinterp.load("runs/demo/checkpoints/step_00000200")  # one of its checkpoints
    >>> model = tinyinterp.load("roneneldan/TinyStories-33M")     # official checkpoint (hub)
    >>> model = tinyinterp.load("/models/gpt2-xl")                 # a local save_pretrained folder

Whatever it loads has the same TransformerLens hook names, ``.cfg`` and ``.tokenizer``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from tinyinterp import rundir
from tinyinterp.errors import ModelLoadError
from tinyinterp.external import is_hf_model_dir, load_external


def _is_our_run(path: Path) -> bool:
    config = path / rundir.CONFIG_FILE
    if not config.is_file():
        return False
    data = rundir.read_json(config)
    return isinstance(data, dict) and "model" in data and "model_type" not in data


def load(name_or_path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
    """Load a run directory, a checkpoint, a local HF model folder, or a hub model name."""
    path = Path(name_or_path).expanduser()
    if path.is_dir() and _is_our_run(path):
        return rundir.load_run(path, device=device)
    if path.is_dir() and is_hf_model_dir(path):
        return load_external(str(path), device=device, dtype=dtype)
    if path.exists():
        raise ModelLoadError(
            f"{path}: not a tinyinterp run directory (config.json + model.safetensors + tokenizer.json) "
            "nor a Hugging Face model folder"
        )
    name = str(name_or_path)
    looks_like_hub_name = (name.count("/") == 1 and not name.startswith((".", "/", "~"))) or name.startswith("gpt2")
    if not looks_like_hub_name:
        raise ModelLoadError(
            f"{name}: no such directory, and not a hub model name (e.g. roneneldan/TinyStories-33M, gpt2-xl)"
        )
    return load_external(name, device=device, dtype=dtype)
