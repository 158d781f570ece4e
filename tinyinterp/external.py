"""External models — official ``roneneldan/TinyStories-*`` checkpoints, ``gpt2`` … ``gpt2-xl`` and
local Hugging Face model folders — behind the same hook names as our own models.

They are booted with ``TransformerBridge.boot_transformers`` and put in
``enable_compatibility_mode()`` (TransformerLens 4's replacement for ``HookedTransformer``),
then wrapped in :class:`ExternalModel`, which gives them the tinyinterp model contract
(``.cfg``, ``.tokenizer`` as a :class:`tinyinterp.tokenizer.Tokenizer`, ``run_with_cache``,
``run_with_hooks``). Offline, a hub name fails at once with one line saying how to point at
a local copy instead of hanging in the hub client's retries.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from tinyinterp.errors import ModelLoadError
from tinyinterp.hub import hub_reachable

log = logging.getLogger(__name__)

# Hub names tinyinterp knows about (any other "owner/name" is tried too).
KNOWN_HUB_MODELS = (
    "roneneldan/TinyStories-1M",
    "roneneldan/TinyStories-3M",
    "roneneldan/TinyStories-8M",
    "roneneldan/TinyStories-28M",
    "roneneldan/TinyStories-33M",
    "roneneldan/TinyStories-1Layer-21M",
    "roneneldan/TinyStories-2Layers-33M",
    "roneneldan/TinyStories-Instruct-33M",
    "gpt2",
    "gpt2-medium",
    "gpt2-large",
    "gpt2-xl",
)


class ExternalModel:
    """A TransformerBridge (compatibility mode) with the tinyinterp model contract."""

    supports_kv_cache = False

    def __init__(self, bridge, tokenizer, name: str):
        self.bridge = bridge
        self.tokenizer = tokenizer
        self.name = name
        self.cfg = bridge.cfg  # has n_layers, n_heads, d_model, d_head, d_mlp, n_ctx, d_vocab

    def __call__(self, tokens: torch.Tensor, return_type: str | None = "logits", **kwargs):
        if "kv_cache" in kwargs or "targets" in kwargs:
            raise TypeError(f"{self.name}: kv_cache/targets are only supported on tinyinterp's own models")
        return self.bridge(tokens, return_type=return_type, **kwargs)

    forward = __call__

    def run_with_cache(self, *args, **kwargs):
        return self.bridge.run_with_cache(*args, **kwargs)

    def run_with_hooks(self, *args, **kwargs):
        return self.bridge.run_with_hooks(*args, **kwargs)

    def hooks(self, *args, **kwargs):
        return self.bridge.hooks(*args, **kwargs)

    @property
    def hook_dict(self):
        return self.bridge.hook_dict

    def parameters(self):
        return self.bridge.parameters()

    def to(self, device):
        self.bridge.to(device)
        return self

    def eval(self):
        self.bridge.eval()
        return self

    def __repr__(self) -> str:
        c = self.cfg
        return f"ExternalModel({self.name!r}, n_layers={c.n_layers}, d_model={c.d_model}, n_heads={c.n_heads})"


def is_hf_model_dir(path: Path) -> bool:
    """A local folder saved by ``save_pretrained`` (config.json with a ``model_type``)."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    import json

    try:
        return "model_type" in json.loads(config.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False


def _cached_snapshot(name: str) -> Path | None:
    """The local hub-cache folder of ``name`` if it was downloaded before, else None."""
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(name, "config.json")
    except Exception:  # noqa: BLE001 - any failure just means "not cached"
        return None
    return Path(hit).parent if isinstance(hit, str) else None


def resolve_external(name_or_path: str) -> Path | str:
    """A local folder for ``name_or_path``, or the hub name when the hub can be reached."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not is_hf_model_dir(path):
            raise ModelLoadError(
                f"{path}: not a tinyinterp run directory nor a Hugging Face model folder "
                "(expected config.json with model.safetensors, or a save_pretrained folder)"
            )
        return path
    if hub_reachable():
        return name_or_path
    cached = _cached_snapshot(name_or_path)
    if cached is not None:
        return cached
    raise ModelLoadError(
        f"could not download {name_or_path!r} from the Hugging Face Hub (no connection); on a machine "
        f"with internet run `huggingface-cli download {name_or_path} --local-dir DIR`, copy DIR here "
        "and pass its path instead"
    )


def resolve_local(name_or_path: str) -> Path:
    """Like :func:`resolve_external`, but always a local folder: a reachable hub name is downloaded
    (config, tokenizer and weight files only) for :func:`tinyinterp.native_import.load_native`."""
    source = resolve_external(name_or_path)
    if isinstance(source, Path):
        return source
    from tinyinterp.native_import import hf_download

    log.info("downloading %s from the Hugging Face Hub", source)
    try:
        return hf_download(source)
    except Exception as e:  # noqa: BLE001 - hub client errors come in many types; one line for all
        raise ModelLoadError(f"could not download {name_or_path!r}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


def load_external(name_or_path: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> ExternalModel:
    """Boot an HF causal LM (hub name or local folder) as a hooked :class:`ExternalModel`."""
    from transformer_lens.model_bridge import TransformerBridge

    from tinyinterp.tokenizer import Tokenizer

    source = resolve_external(name_or_path)
    log.info("booting %s with TransformerBridge", source)
    try:
        bridge = TransformerBridge.boot_transformers(str(source), device=str(device), dtype=dtype)
    except OSError as e:
        raise ModelLoadError(f"could not load {name_or_path!r}: {str(e).splitlines()[0]}") from None
    except (ValueError, KeyError, NotImplementedError) as e:
        raise ModelLoadError(f"{name_or_path!r} is not a supported causal LM: {str(e).splitlines()[0]}") from None
    bridge.enable_compatibility_mode(disable_warnings=True)
    bridge.eval()
    try:
        tokenizer = Tokenizer.from_hf(str(source))
    except Exception as e:  # noqa: BLE001 - tokenizers raises bare Exceptions
        raise ModelLoadError(f"{name_or_path!r}: could not load its tokenizer ({e})") from None
    return ExternalModel(bridge, tokenizer, name=str(name_or_path))
