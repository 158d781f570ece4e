"""TinyModel's sparse MLPs (transcoders) and SAEs, read from a local file or folder into our config and tensor names.

TinyModel (PyPI ``tinymodel``, hub repo ``noanabeshima/tiny_model``) is a 4-layer TinyStories LM
*without LayerNorm* whose blocks are ``x += attn(x); x += mlp(x)``. Its ``SparseMLP`` is
``decoder(relu(encoder(x)))`` with two ``nn.Linear``s, saved as a ``torch.save`` state dict
``<tag>.pt`` holding exactly ``encoder.weight (n_features, d_in)``, ``encoder.bias (n_features,)``,
``decoder.weight (d_out, n_features)``, ``decoder.bias (d_out,)``. So, faithfully: ReLU (no TopK),
no decoder bias subtracted from the input, no input normalisation, decoder rows not unit norm.

The file's tag (its name, e.g. ``M2_S-2_R1_P0`` or ``M2``) says where it reads and writes, after
``tinymodel.lm.TinyModel.sparse_mlp``: ``M{l}`` (their "mlp map") is a transcoder from the residual
after attention (``res_mlp`` = our ``hook_resid_mid``, which *is* the MLP's input there: no LayerNorm)
to ``hook_mlp_out``; ``A{l}`` an SAE on ``hook_attn_out``; ``Mo{l}`` on ``hook_mlp_out``; ``Ra{l}`` on
``hook_resid_pre``; ``Rm{l}`` on ``hook_resid_mid``. Other names need ``hook_in``/``hook_out`` given.

The ``.pt`` pickle is read with ``torch.load(weights_only=True)`` (tensors only; anything else is
refused in one line, never loaded unsafely); a ``.safetensors`` file with the same tensor names works too.
"""

from __future__ import annotations

import logging
import pickle
import re
from pathlib import Path

import torch

from tinyinterp.dictionaries.config import DictionaryConfig, DictionaryError

log = logging.getLogger(__name__)

HUB_REPO = "noanabeshima/tiny_model"
MODEL_NAME = "tiny_model"
SUFFIXES = (".pt", ".safetensors")
TENSORS = ("encoder.weight", "encoder.bias", "decoder.weight", "decoder.bias")
DEFAULT_FILES = {  # tinymodel 0.1.2's DEFAULT_SPARSE_MLPS: the files its `lm["M0"]` … loads
    "M0": "mlp_map_test/M0_S-2_R1_P0", "M1": "mlp_map_test/M1_S-2_R1_P0", "M2": "mlp_map_test/M2_S-2_R1_P0",
    "M3": "mlp_map_test/M3_S-1_B0_P0", "A0": "attn/A0_S-2_R1_P0", "A1": "attn/A1_S-1_R1_P0",
    "A2": "attn/A2_S-2_R1_P0", "A3": "attn/A3_S-1_R1_P0",
}
_TAG = re.compile(r"^(Mo|M|A|Ra|Rm)(\d+)(?:_|$)")


def hooks_for_tag(name: str) -> tuple[str, str, str]:
    """(kind, hook_in, hook_out) for a TinyModel file name such as ``M2_S-2_R1_P0`` or ``A1``."""
    m = _TAG.match(name)
    if m is None:
        raise DictionaryError(f"{name!r} is not a TinyModel tag (M/A/Mo/Ra/Rm + layer, e.g. M2_S-2_R1_P0); "
                              "pass the hooks explicitly")
    kind, layer = m.group(1), int(m.group(2))
    if kind == "M":
        return "transcoder", f"blocks.{layer}.hook_resid_mid", f"blocks.{layer}.hook_mlp_out"
    hook = {"A": "hook_attn_out", "Mo": "hook_mlp_out", "Ra": "hook_resid_pre", "Rm": "hook_resid_mid"}[kind]
    return "sae", f"blocks.{layer}.{hook}", f"blocks.{layer}.{hook}"


def weight_files(folder: Path) -> list[Path]:
    """The TinyModel-style weight files directly in ``folder``."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix in SUFFIXES)


def _read(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from tinyinterp.errors import RunDirError
        from tinyinterp.runs.rundir import load_tensors

        try:
            return load_tensors(path)
        except RunDirError as e:
            raise DictionaryError(str(e)) from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise DictionaryError(f"{path}: refused: it holds objects other than tensors (possibly code)") from None
    except Exception as e:  # noqa: BLE001 - zip, EOF and version errors come in many types; one line for all
        raise DictionaryError(f"{path}: unreadable weights file ({type(e).__name__})") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise DictionaryError(f"{path}: not a state dict of named tensors")
    return state


def read_tinymodel(path: str | Path, hook_in: str | None = None,
                   hook_out: str | None = None) -> tuple[DictionaryConfig, dict[str, torch.Tensor], Path]:
    """(config, tensors in our names, file) of a TinyModel sparse MLP / SAE: ``<tag>.pt`` (or ``.safetensors``),
    or a folder holding exactly one. :func:`tinyinterp.dictionaries.load_dictionary` builds the coder
    (and checks shapes and finiteness)."""
    path = Path(path)
    if path.is_dir():
        files = weight_files(path)
        if len(files) != 1:
            names = ", ".join(p.name for p in files) or "none"
            raise DictionaryError(f"--dict {path}: a TinyModel folder must hold one .pt/.safetensors file ({names}); pass the file")
        path = files[0]
    if path.suffix not in SUFFIXES:
        raise DictionaryError(f"--dict {path}: not a dictionary folder, nor a TinyModel .pt/.safetensors file")
    state = _read(path)
    if sorted(state) != sorted(TENSORS):
        raise DictionaryError(f"{path}: expected TinyModel's tensors {list(TENSORS)}, found {sorted(state)[:6]}")
    enc_w, dec_w = state["encoder.weight"], state["decoder.weight"]
    if enc_w.dim() != 2 or dec_w.dim() != 2 or dec_w.shape[1] != enc_w.shape[0]:
        raise DictionaryError(f"{path}: encoder.weight {tuple(enc_w.shape)} and decoder.weight {tuple(dec_w.shape)} "
                              "do not make an (n_features, d_in) / (d_out, n_features) pair")
    if hook_in is None or hook_out is None:
        try:
            kind, hook_in, hook_out = hooks_for_tag(path.stem)
        except DictionaryError as e:
            raise DictionaryError(f"{path}: {e}") from None
    else:
        kind = "sae" if hook_in == hook_out else "transcoder"
    n_features, d_in = enc_w.shape
    cfg = DictionaryConfig(kind, hook_in, hook_out, int(d_in), int(dec_w.shape[0]), int(n_features), int(n_features),
                           model_name=MODEL_NAME, activation="relu", apply_b_dec_to_input=False)
    ours = {"W_enc": enc_w.T.contiguous(), "b_enc": state["encoder.bias"], "W_dec": dec_w.T.contiguous(),
            "b_dec": state["decoder.bias"]}
    return cfg, ours, path


def download_tinymodel(tag: str) -> Path:
    """The local path of TinyModel file ``tag`` (``M2`` … or ``mlp_map_test/M2_S-2_R1_P0``): from the hub cache,
    else downloaded (time-bounded); with neither, one line saying so."""
    from huggingface_hub import hf_hub_download

    from tinyinterp.hf import hub

    file = DEFAULT_FILES.get(tag, tag).removesuffix(".pt") + ".pt"
    try:
        return Path(hf_hub_download(HUB_REPO, file, local_files_only=True))
    except Exception:  # noqa: BLE001 - not in the cache (the client raises several types); try the hub
        pass
    problem = hub.hub_problem()
    if problem is not None:
        raise DictionaryError(f"TinyModel {tag!r}: not in the local hub cache and the Hugging Face Hub is unreachable "
                              f"({problem}); download {HUB_REPO}/{file} elsewhere and pass its path")
    log.info("downloading %s/%s", HUB_REPO, file)
    try:
        return Path(hf_hub_download(HUB_REPO, file, etag_timeout=hub.PROBE_TIMEOUT_S * 3))
    except Exception as e:  # noqa: BLE001 - hub client errors come in many types; one line for all
        raise DictionaryError(f"could not download {HUB_REPO}/{file}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
