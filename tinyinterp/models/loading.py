"""``tinyinterp.load``: one entry point for every model tinyinterp can look inside.

    >>> import tinyinterp
    >>> model = tinyinterp.load("runs/demo")                      # our run directory
    >>> model = tinyinterp.load("runs/demo/checkpoints/step_00000200")  # one of its checkpoints
    >>> model = tinyinterp.load("runs/unfinished")                # no final weights yet: its latest checkpoint
    >>> model = tinyinterp.load("roneneldan/TinyStories-33M")     # official checkpoint (hub)
    >>> model = tinyinterp.load("/models/gpt2-xl")                 # a local save_pretrained folder
    >>> model = tinyinterp.load("gpt2", backend="bridge")          # through TransformerLens's bridge

Whatever it loads has the same TransformerLens hook names, ``.cfg`` and ``.tokenizer``.

**Backends for Hugging Face checkpoints.** ``"native"`` (default) converts GPT-Neo (the official
TinyStories checkpoints) and GPT-2 checkpoints into our own :class:`~tinyinterp.models.transformer.HookedTransformer`
(:mod:`tinyinterp.hf.native_import`): same outputs, several times faster to cache and train, KV cache.
A well-formed checkpoint of an architecture it does not convert goes through the bridge, with a log line
saying so; a damaged one (missing, extra, mis-shaped or non-finite tensors, sizes the weights do not
have) is refused by both. ``"bridge"`` boots ``TransformerBridge`` in compatibility mode
(:mod:`tinyinterp.hf.bridge`), whose weights are processed as TL's ``from_pretrained`` does — call
``model.process_weights()`` on a native model to compare them. Hub names: :mod:`tinyinterp.hf.hub`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from tinyinterp.runs import rundir
from tinyinterp.runs.checkpoints import latest_checkpoint
from tinyinterp.errors import ModelLoadError
from tinyinterp.hf.bridge import load_external
from tinyinterp.hf.family import UnsupportedArchitectureError
from tinyinterp.hf.hub import broken_link_message, is_hf_model_dir, resolve_local
from tinyinterp.hf.native_import import load_native

BACKENDS = ("native", "bridge")
log = logging.getLogger(__name__)


def _is_our_run(path: Path) -> bool:
    config = path / rundir.CONFIG_FILE
    if not config.is_file():
        return False
    data = rundir.read_json(config)
    return isinstance(data, dict) and "model" in data and "model_type" not in data


def _unfinished_run_checkpoint(path: Path) -> Path | None:
    """The latest checkpoint of a run that has no final weights yet (still training, or interrupted), else None."""
    if (path / rundir.WEIGHTS_FILE).is_file():
        return None
    return latest_checkpoint(path)


def _load_hf(name_or_path: str, device, dtype, backend: str):
    if backend == "bridge":
        return load_external(name_or_path, device=device, dtype=dtype)
    folder = resolve_local(name_or_path)
    try:  # named by the hub name, not the cache folder, for display (see interp.inputs.model_name)
        return load_native(folder, device=device, dtype=dtype, name=name_or_path)
    except UnsupportedArchitectureError as e:  # well-formed, checked; anything damaged is raised, never bridged
        log.info("%s: loading through TransformerBridge (%s)", name_or_path, e)
        return load_external(str(folder), device=device, dtype=dtype)


def load(
    name_or_path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
    backend: str = "native",
):
    """Load a run directory, a checkpoint, a local HF model folder, or a hub model name.

    ``backend`` (HF checkpoints only): ``"native"`` — our own model — or ``"bridge"`` (TransformerBridge).
    """
    from tinyinterp.models.devices import resolve_device

    device = resolve_device(device) if isinstance(device, str) else device  # one line, not a CUDA traceback
    if backend not in BACKENDS:
        raise ModelLoadError(f"backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    path = Path(name_or_path).expanduser()
    broken = broken_link_message(path)
    if broken:  # Path.exists says False for a looping link, which would make it look like a hub name
        raise ModelLoadError(broken)
    if path.is_dir() and _is_our_run(path):
        if backend == "bridge":
            raise ModelLoadError(
                f"{path}: backend 'bridge' is for Hugging Face checkpoints; run `tinyinterp export {path} --out DIR` "
                "and load DIR with it"
            )
        return rundir.load_run(path, device=device)
    unfinished = _unfinished_run_checkpoint(path) if path.is_dir() else None
    if unfinished is not None:
        if backend == "bridge":
            raise ModelLoadError(f"{path}: backend 'bridge' is for Hugging Face checkpoints, not a run directory")
        log.warning("%s: a run without final weights (being trained or interrupted); using its latest checkpoint %s",
                    path, unfinished.name)
        return rundir.load_run(unfinished, device=device)
    if path.is_dir() and is_hf_model_dir(path):
        return _load_hf(str(path), device, dtype, backend)
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
    return _load_hf(name, device, dtype, backend)
