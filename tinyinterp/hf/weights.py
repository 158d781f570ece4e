"""Read the weight files of an untrusted Hugging Face folder: headers first (names, dtypes, shapes,
without loading a byte of data), then the tensors, then a finiteness check.

Layouts: ``model.safetensors``; ``model.safetensors.index.json`` + shards; ``pytorch_model.bin`` (and its
index) read through ``transformers``' loader with ``weights_only=True`` — a pickle holding anything but
tensors is refused with our own line (never torch's advice to turn the check off). Every failure is a
:class:`~tinyinterp.hf.family.BadCheckpointError` naming the file: a corrupt header, a shard index naming a
path outside the folder or a missing shard, a tensor that is NaN or infinite.
"""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import torch

from tinyinterp.hf.family import BadCheckpointError

SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PICKLE_FILE = "pytorch_model.bin"
PICKLE_INDEX = "pytorch_model.bin.index.json"
WEIGHT_FILES = (SAFETENSORS_FILE, SAFETENSORS_INDEX, PICKLE_FILE, PICKLE_INDEX)

_MAX_HEADER = 100 << 20  # safetensors' own limit on the JSON header
_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
             "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1}

Header = dict[str, tuple[str, tuple[int, ...]]]  # tensor name → (dtype, shape)


def weight_files(folder: Path) -> list[Path]:
    """The files holding ``folder``'s weights (safetensors preferred), each checked to lie in ``folder``."""
    for single, index in ((SAFETENSORS_FILE, SAFETENSORS_INDEX), (PICKLE_FILE, PICKLE_INDEX)):
        if (folder / single).is_file():
            return [folder / single]
        if (folder / index).is_file():
            return _shards(folder, folder / index)
    raise BadCheckpointError(f"{folder}: no weights ({', '.join(WEIGHT_FILES)})")


def _shards(folder: Path, index_path: Path) -> list[Path]:
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:
        raise BadCheckpointError(f"{index_path}: unreadable shard index ({type(e).__name__})") from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map or not all(isinstance(v, str) for v in weight_map.values()):
        raise BadCheckpointError(f"{index_path}: 'weight_map' must map tensor names to shard file names")
    root = folder.resolve()
    shards = []
    for name in sorted(set(weight_map.values())):
        path = folder / name
        # A plain file name inside the folder: no "../../etc/passwd", no absolute path, no symlink out.
        if name in ("", ".", "..") or "/" in name or "\\" in name or path.resolve().parent != root:
            raise BadCheckpointError(f"{index_path}: shard {name!r} is not a file name inside {folder}")
        if not path.is_file():
            raise BadCheckpointError(f"{index_path}: shard {name!r} is missing")
        shards.append(path)
    return shards


def read_header(path: Path) -> Header:
    """Names, dtypes and shapes of the tensors in ``path`` without loading them; every entry checked
    (offsets inside the file, sizes matching shapes), so a corrupt header never reaches a parser."""
    if path.suffix == ".bin":
        return {k: (str(v.dtype).removeprefix("torch."), tuple(v.shape)) for k, v in _read_pickle(path, "meta").items()}
    bad = f"{path}: corrupt safetensors file"
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            prefix = f.read(8)
            n = int.from_bytes(prefix, "little") if len(prefix) == 8 else -1
            if not 2 <= n <= min(_MAX_HEADER, size - 8):
                raise BadCheckpointError(f"{bad} (header length {n} in a {size}-byte file)")
            header = json.loads(f.read(n))
    except OSError as e:
        raise BadCheckpointError(f"{path}: unreadable ({e.strerror or type(e).__name__})") from None
    except (ValueError, RecursionError):
        raise BadCheckpointError(f"{bad} (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise BadCheckpointError(f"{bad} (its header is not a JSON object)")
    data_size = size - 8 - n
    out: Header = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        ok = (isinstance(info, dict) and info.get("dtype") in _ITEMSIZE and isinstance(info.get("shape"), list)
              and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in info["shape"])
              and isinstance(info.get("data_offsets"), list) and len(info["data_offsets"]) == 2
              and all(isinstance(o, int) and not isinstance(o, bool) for o in info["data_offsets"]))
        if ok:
            start, end = info["data_offsets"]
            ok = 0 <= start <= end <= data_size and end - start == math.prod(info["shape"]) * _ITEMSIZE[info["dtype"]]
        if not ok:
            raise BadCheckpointError(f"{bad} (entry {str(name)[:60]!r} does not describe a tensor inside the file)")
        out[name] = (info["dtype"], tuple(info["shape"]))
    return out


def read_headers(files: list[Path]) -> Header:
    """:func:`read_header` over every shard; a tensor in two shards is refused."""
    merged: Header = {}
    for path in files:
        for name, entry in read_header(path).items():
            if name in merged:
                raise BadCheckpointError(f"{path}: tensor {name!r} is also in another shard")
            merged[name] = entry
    return merged


def _read_pickle(path: Path, map_location: str) -> dict[str, torch.Tensor]:
    from transformers.modeling_utils import load_state_dict

    try:
        sd = load_state_dict(str(path), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise BadCheckpointError(
            f"{path}: refused: it holds objects other than tensors (possibly code); use a safetensors copy of the model"
        ) from None
    except Exception as e:  # noqa: BLE001 - zip, EOF, pickle and version errors come in many types; none needs a traceback
        raise BadCheckpointError(f"{path}: unreadable weights file ({type(e).__name__})") from None
    if not isinstance(sd, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()):
        raise BadCheckpointError(f"{path}: not a dictionary of named tensors")
    return sd


def read_tensors(files: list[Path]) -> dict[str, torch.Tensor]:
    """Every tensor of ``files`` (headers must have been checked with :func:`read_headers`), each finite."""
    from safetensors.torch import load_file

    sd: dict[str, torch.Tensor] = {}
    for path in files:
        if path.suffix == ".bin":
            part = _read_pickle(path, "cpu")
        else:
            try:
                part = load_file(str(path))
            except Exception as e:  # noqa: BLE001 - SafetensorError and OSError; one line for all
                raise BadCheckpointError(f"{path}: unreadable safetensors file ({str(e).splitlines()[0][:120]})") from None
        for name, t in part.items():
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise BadCheckpointError(f"{path}: tensor {name!r} holds NaN or infinite values")
        sd.update(part)
    return sd
