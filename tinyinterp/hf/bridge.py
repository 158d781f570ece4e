"""Hugging Face models through TransformerLens's bridge — ``backend="bridge"``, and architectures the
native importer does not convert — behind the same hook names as our own models.

A local folder is checked first (:func:`check_well_formed`): the weight files must hold exactly the
tensors, in the shapes, that its ``config.json``'s architecture declares, so a damaged folder is refused
instead of being filled with random weights. Models are booted with ``TransformerBridge.boot_transformers`` and put in
``enable_compatibility_mode()`` (TransformerLens 4's replacement for ``HookedTransformer``),
then wrapped in :class:`ExternalModel`, which gives them the tinyinterp model contract
(``.cfg``, ``.tokenizer`` as a :class:`tinyinterp.data.tokenizer.Tokenizer`, ``run_with_cache``,
``run_with_hooks``). Hub names are downloaded by :mod:`tinyinterp.hf.hub` (offline: one line at once).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from tinyinterp.errors import ModelLoadError
from tinyinterp.hf.family import BadCheckpointError
from tinyinterp.hf.hub import resolve_local
from tinyinterp.hf.native_import import check_tokenizer, read_hf_config
from tinyinterp.hf.weights import read_headers, weight_files

log = logging.getLogger(__name__)


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


def load_external(name_or_path: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> ExternalModel:
    """Boot an HF causal LM (hub name or local folder) as a hooked :class:`ExternalModel`."""
    from transformer_lens.model_bridge import TransformerBridge

    from tinyinterp.data.tokenizer import Tokenizer

    source = resolve_local(name_or_path)  # a hub name is downloaded first (time-bounded), then checked like a folder
    check_well_formed(source)
    log.info("booting %s with TransformerBridge", source)
    try:
        bridge = TransformerBridge.boot_transformers(str(source), device=str(device), dtype=dtype)
    except OSError as e:
        raise ModelLoadError(f"could not load {name_or_path!r}: {str(e).splitlines()[0]}") from None
    except (ValueError, KeyError, NotImplementedError) as e:
        raise ModelLoadError(f"{name_or_path!r} is not a supported causal LM: {str(e).splitlines()[0]}") from None
    bad = next((name for name, p in bridge.named_parameters() if p.is_floating_point() and not bool(torch.isfinite(p).all())), None)
    if bad is not None:
        raise BadCheckpointError(f"{name_or_path}: weight {bad!r} holds NaN or infinite values")
    bridge.enable_compatibility_mode(disable_warnings=True)
    bridge.eval()
    try:
        tokenizer = Tokenizer.from_hf(str(source))
    except Exception as e:  # noqa: BLE001 - tokenizers raises bare Exceptions
        raise ModelLoadError(f"{name_or_path!r}: could not load its tokenizer ({e})") from None
    check_tokenizer(tokenizer, bridge.cfg.d_vocab, str(name_or_path))
    return ExternalModel(bridge, tokenizer, name=str(name_or_path))


def check_well_formed(folder: Path) -> None:
    """Refuse ``folder`` unless its weight files hold exactly the parameters its ``config.json`` declares
    (names and shapes, read from the headers and an empty model on the meta device: nothing allocated)."""
    from collections import defaultdict

    from transformers import AutoConfig, AutoModelForCausalLM

    model_type = read_hf_config(folder).get("model_type")
    header = read_headers(weight_files(folder))
    try:
        config = AutoConfig.from_pretrained(str(folder), trust_remote_code=False)
    except Exception as e:  # noqa: BLE001 - transformers raises ValueError/KeyError/TypeError for bad configs
        raise BadCheckpointError(f"{folder}: config.json is not a valid {model_type!r} config ({_first_line(e)})") from None
    for key in ("num_hidden_layers", "hidden_size"):  # before building anything: a billion layers is refused here
        value = getattr(config, key, None)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise BadCheckpointError(f"{folder}: config.json {key}={value!r} must be a positive integer")
    n_layers = getattr(config, "num_hidden_layers", None)
    if isinstance(n_layers, int) and n_layers > len(header):
        raise BadCheckpointError(
            f"{folder}: config.json (model_type {model_type!r}) says {n_layers} layers but the weights hold only {len(header)} tensors"
        )
    try:
        with torch.device("meta"):
            empty = AutoModelForCausalLM.from_config(config)
    except Exception as e:  # noqa: BLE001 - a config transformers cannot build is not a model we can load
        raise BadCheckpointError(f"{folder}: cannot build a {model_type!r} model from config.json ({_first_line(e)})") from None
    names_of = defaultdict(list)  # one parameter (tied ones share it) -> its names
    shapes = {}
    for name, param in empty.named_parameters(remove_duplicate=False):
        names_of[id(param)].append(name)
        shapes[name] = tuple(param.shape)
    buffers = {name for name, _ in empty.named_buffers()}
    prefix = getattr(empty, "base_model_prefix", "") + "."
    stored = {name: tuple(shape) for name, (_, shape) in header.items()}
    if prefix != "." and not any(n.startswith(prefix) for n in stored):  # a base-model checkpoint (HF adds the prefix)
        stored = {(n if n in shapes else prefix + n): s for n, s in stored.items()}
    missing = sorted(names[0] for names in names_of.values() if not any(n in stored for n in names))
    extra = sorted(n for n in stored if n not in shapes and n not in buffers)
    wrong = sorted(n for n in stored if n in shapes and stored[n] != shapes[n])
    problems = [f"{label} {', '.join(repr(x) for x in names[:3])}" + (f" and {len(names) - 3} more" if len(names) > 3 else "")
                for label, names in (("missing", missing), ("unexpected", extra), ("mis-shaped", wrong)) if names]
    if problems:
        raise BadCheckpointError(f"{folder}: weights do not match config.json (model_type {model_type!r}): " + "; ".join(problems))


def _first_line(e: Exception) -> str:
    return str(e).splitlines()[0][:160] if str(e) else type(e).__name__
