"""Dictionaries on disk: SAELens's layout (ours), and readers for eai-sparsify's.

Ours is SAELens 6's ``SAE.load_from_disk`` layout: ``cfg.json`` + ``sae_weights.safetensors`` holding
``W_enc (d_in, d_sae)``, ``b_enc``, ``W_dec (d_sae, d_out)``, ``b_dec``. Field names are the ones
SAELens's ``TopKSAEConfig`` / ``SAEMetadata`` read (``architecture``, ``d_in``, ``d_sae``, ``k``,
``apply_b_dec_to_input``, ``normalize_activations``, ``reshape_activations``, ``metadata.hook_name``,
``metadata.model_name`` …); our own ``DictionaryConfig`` rides along under ``"tinyinterp"``. The
training normalisation is folded into the weights, so ``normalize_activations`` is ``"none"`` and a
loaded dictionary acts on raw activations. An SAE is ``"architecture": "topk"``. SAELens 6.54 has no
TopK transcoder class (its ``"transcoder"`` is ReLU), so our transcoders say ``"topk_transcoder"``:
SAELens refuses them by name rather than reading them with the wrong activation. ReLU dictionaries
(TinyModel's) are SAELens's ``"standard"`` SAE and its (ReLU) ``"transcoder"``.

TinyModel's sparse-MLP / SAE files (``<tag>.pt`` state dicts, :mod:`.tinymodel`) load from a file or a
folder holding one. eai-sparsify's layout (``cfg.json`` with ``num_latents``/``k``/``transcode``/``d_in`` + ``sae.safetensors``
with ``encoder.weight (d_sae, d_in)``, ``encoder.bias``, ``W_dec``, ``b_dec``) loads with
:func:`load_dictionary` too; its folders name HF modules (``h.1.mlp``), mapped to our hook names.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import torch

from tinyinterp.io.atomic import atomic_write_text
from tinyinterp.dictionaries import tinymodel
from tinyinterp.dictionaries.config import DictionaryConfig, DictionaryError
from tinyinterp.dictionaries.sparse_coder import PARAMETERS, SparseCoder
from tinyinterp.errors import RunDirError

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
SPARSIFY_WEIGHTS_FILE = "sae.safetensors"
SAELENS_VERSION = "6.0.0"  # the layout version we write (6.x readers skip their pre-6 conversions)
ARCHITECTURES = {("sae", "topk"): "topk", ("transcoder", "topk"): "topk_transcoder",
                 ("sae", "relu"): "standard", ("transcoder", "relu"): "transcoder"}


def saelens_cfg(coder: SparseCoder, extra_metadata: dict | None = None) -> dict:
    cfg = coder.cfg
    out = {
        "architecture": ARCHITECTURES[cfg.kind, cfg.activation], "d_in": cfg.d_in, "d_sae": cfg.d_sae, "k": cfg.k,
        "dtype": str(coder.W_enc.dtype).removeprefix("torch."), "device": "cpu",
        "apply_b_dec_to_input": coder.applies_b_dec_to_input, "normalize_activations": "none",
        "reshape_activations": "hook_z" if cfg.hook_in.endswith("hook_z") else "none",
        "rescale_acts_by_decoder_norm": False,
        "metadata": {"sae_lens_version": SAELENS_VERSION, "sae_lens_training_version": None,
                     "model_name": cfg.model_name, "hook_name": cfg.hook_in, "hook_head_index": None,
                     "prepend_bos": False, **(extra_metadata or {})},
        "tinyinterp": cfg.to_dict(),
    }
    if cfg.activation == "relu":
        del out["k"]  # SAELens's ReLU configs have no k
    if cfg.kind == "transcoder":
        out["d_out"] = cfg.d_out
        out["metadata"]["hook_name_out"] = cfg.hook_out
    return out


def save_dictionary(coder: SparseCoder, out_dir: Path, extra_metadata: dict | None = None) -> Path:
    """Write ``coder`` to ``out_dir`` (weights first, config last: a folder with a config is complete)."""
    from tinyinterp.runs.rundir import atomic_save_tensors

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_save_tensors(out_dir / WEIGHTS_FILE, coder.tensors())
    atomic_write_text(out_dir / CFG_FILE, json.dumps(saelens_cfg(coder, extra_metadata), indent=2))
    return out_dir


def _read_cfg(path: Path) -> dict:
    try:
        cfg = json.loads((path / CFG_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DictionaryError(f"--dict {path}: no {CFG_FILE}; is this a dictionary folder?") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DictionaryError(f"{path / CFG_FILE}: not valid JSON ({e})") from None
    if not isinstance(cfg, dict):
        raise DictionaryError(f"{path / CFG_FILE}: expected a JSON object")
    return cfg


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    from tinyinterp.runs.rundir import load_tensors

    try:
        return load_tensors(path)
    except RunDirError as e:
        raise DictionaryError(str(e)) from None


def _coder(cfg: DictionaryConfig, tensors: dict[str, torch.Tensor], source: Path) -> SparseCoder:
    shapes = {"W_enc": (cfg.d_in, cfg.d_sae), "b_enc": (cfg.d_sae,), "W_dec": (cfg.d_sae, cfg.d_out), "b_dec": (cfg.d_out,)}
    missing = [n for n in PARAMETERS if n not in tensors]
    if missing:
        raise DictionaryError(f"{source}: missing tensors {missing}")
    for name, shape in shapes.items():
        t = tensors[name]
        if tuple(t.shape) != shape:
            raise DictionaryError(f"{source}: {name} has shape {tuple(t.shape)}, the config implies {shape}")
        if not t.is_floating_point() or not bool(torch.isfinite(t).all()):
            raise DictionaryError(f"{source}: {name} is not a finite floating-point tensor")
    coder = SparseCoder(cfg, dtype=tensors["W_enc"].dtype)
    with torch.no_grad():
        for name in PARAMETERS:
            getattr(coder, name).copy_(tensors[name])
    return coder


def _ours(path: Path, raw: dict) -> SparseCoder:
    ours = raw.get("tinyinterp")
    if not isinstance(ours, dict):  # written by SAELens itself: rebuild our config from its fields
        meta = raw.get("metadata") if isinstance(raw.get("metadata"), dict) else {}
        if raw.get("architecture") not in ("topk", "standard"):
            raise DictionaryError(f"{path / CFG_FILE}: architecture {raw.get('architecture')!r} is not a TopK or ReLU SAE")
        hook = meta.get("hook_name") or raw.get("hook_name")
        relu = raw["architecture"] == "standard"
        ours = {"kind": "sae", "hook_in": hook, "hook_out": hook, "d_in": raw.get("d_in"), "d_out": raw.get("d_in"),
                "d_sae": raw.get("d_sae"), "k": raw.get("d_sae") if relu else raw.get("k"),
                "model_name": meta.get("model_name") or "", "activation": "relu" if relu else "topk",
                "apply_b_dec_to_input": bool(raw.get("apply_b_dec_to_input", True))}
        if raw.get("normalize_activations", "none") != "none":
            raise DictionaryError(f"{path / CFG_FILE}: normalize_activations {raw['normalize_activations']!r} is not supported; "
                                  "fold the scaling factor into the weights first")
    try:
        cfg = DictionaryConfig(**{k: ours[k] for k in DictionaryConfig.__dataclass_fields__ if k in ours})
    except TypeError as e:
        raise DictionaryError(f"{path / CFG_FILE}: incomplete dictionary config ({e})") from None
    return _coder(cfg, _tensors(path / WEIGHTS_FILE), path / WEIGHTS_FILE)


_HF_MODULE = re.compile(r"^(?:transformer\.)?(?:h|layers)\.(\d+)(?:\.(mlp|attn))?$")


def hooks_for_hf_module(name: str, transcode: bool) -> tuple[str, str]:
    """Our (hook_in, hook_out) for a sparsify hookpoint of a GPT-2/GPT-Neo HF model (``h.3.mlp`` …)."""
    m = _HF_MODULE.match(name)
    if m is None:
        raise DictionaryError(f"sparsify hookpoint {name!r} is not h.N, h.N.mlp or h.N.attn; pass the hooks explicitly")
    layer, module = int(m.group(1)), m.group(2)
    out = {None: f"blocks.{layer}.hook_resid_post", "mlp": f"blocks.{layer}.hook_mlp_out",
           "attn": f"blocks.{layer}.hook_attn_out"}[module]
    if not transcode:
        return out, out
    if module == "mlp":
        return f"blocks.{layer}.ln2.hook_normalized", out
    if module == "attn":
        return f"blocks.{layer}.ln1.hook_normalized", out
    return f"blocks.{layer}.hook_resid_pre", out


def _sparsify(path: Path, raw: dict, hook_in: str | None, hook_out: str | None) -> SparseCoder:
    tensors = _tensors(path / SPARSIFY_WEIGHTS_FILE)
    if "encoder.weight" not in tensors:
        raise DictionaryError(f"{path / SPARSIFY_WEIGHTS_FILE}: no encoder.weight; not a sparsify dictionary")
    if raw.get("skip_connection") or "W_skip" in tensors:
        raise DictionaryError(f"{path}: sparsify skip connections are not supported")
    if raw.get("activation", "topk") != "topk":
        raise DictionaryError(f"{path}: sparsify activation {raw.get('activation')!r} is not supported (topk only)")
    transcode = bool(raw.get("transcode", False))
    if hook_in is None or hook_out is None:
        hook_in, hook_out = hooks_for_hf_module(path.name, transcode)
    enc = tensors["encoder.weight"]
    cfg = DictionaryConfig("transcoder" if transcode else "sae", hook_in, hook_out, int(raw.get("d_in", enc.shape[1])),
                           int(tensors["W_dec"].shape[1]), int(enc.shape[0]), int(raw.get("k", 32)))
    ours = {"W_enc": enc.T.contiguous(), "b_enc": tensors["encoder.bias"], "W_dec": tensors["W_dec"], "b_dec": tensors["b_dec"]}
    return _coder(cfg, ours, path / SPARSIFY_WEIGHTS_FILE)


def load_dictionary(path: str | Path, hook_in: str | None = None, hook_out: str | None = None) -> SparseCoder:
    """A dictionary from a folder in our/SAELens's layout or eai-sparsify's, or a TinyModel file or folder
    (hooks: given, or from the folder/file name)."""
    path = Path(path)
    if path.is_file():
        return _coder(*tinymodel.read_tinymodel(path, hook_in, hook_out))
    if not path.is_dir():
        raise DictionaryError(f"--dict {path}: not a folder or file")
    if not (path / CFG_FILE).exists() and tinymodel.weight_files(path):
        return _coder(*tinymodel.read_tinymodel(path, hook_in, hook_out))
    raw = _read_cfg(path)
    if (path / WEIGHTS_FILE).is_file():
        return _ours(path, raw)
    if (path / SPARSIFY_WEIGHTS_FILE).is_file():
        return _sparsify(path, raw, hook_in, hook_out)
    raise DictionaryError(f"--dict {path}: neither {WEIGHTS_FILE} (SAELens layout) nor {SPARSIFY_WEIGHTS_FILE} (sparsify)")


def check_against_model(coder: SparseCoder, model) -> None:
    """One line when the dictionary does not fit ``model``: unknown hook, or another width."""
    from tinyinterp.dictionaries.activations import hook_widths

    cfg = coder.cfg
    d_in, d_out = hook_widths(model, [cfg.hook_in, cfg.hook_out])
    if (d_in, d_out) != (cfg.d_in, cfg.d_out):
        raise DictionaryError(f"dictionary for {cfg.hook_in} -> {cfg.hook_out} has widths {cfg.d_in} -> {cfg.d_out}, "
                              f"but this model's activations there are {d_in} -> {d_out}: it belongs to another model")
    if not math.isfinite(cfg.input_scale):
        raise DictionaryError("dictionary input_scale is not finite")
