"""A transcoder set: one transcoder per layer of a model, loaded from a folder of dictionaries.

``--transcoders DIR`` is a folder whose sub-folders are dictionaries (``cfg.json``, see
:mod:`tinyinterp.dictionaries.formats`) of kind transcoder; each reads ``blocks.{l}.ln2.hook_normalized``
and writes ``blocks.{l}.hook_mlp_out`` for one layer ``l``, read from its hook names (the folder names
do not matter). A set fits a model when it has exactly one transcoder per layer and its widths are the
model's. Training scales (``input_scale`` / ``output_scale``) are already folded into saved weights, so
a loaded transcoder maps raw MLP inputs to raw MLP outputs.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from tinyinterp.dictionaries.config import DictionaryError, transcoder_hooks
from tinyinterp.dictionaries.formats import CFG_FILE, load_dictionary
from tinyinterp.dictionaries.sparse_coder import SparseCoder

log = logging.getLogger(__name__)

_LAYER = re.compile(r"^blocks\.(\d+)\.")


class TranscoderSetError(DictionaryError):
    """A transcoder folder that does not fit the model (missing/duplicate layers, another model)."""


@dataclass
class TranscoderSet:
    """One transcoder per layer (``coders[l]`` replaces block ``l``'s MLP)."""

    coders: list[SparseCoder]
    path: Path | None = None
    scan: str = ""
    """Identifier of the set, recorded in graphs (circuit-tracer's ``scan``)."""

    def __len__(self) -> int:
        return len(self.coders)

    def __getitem__(self, layer: int) -> SparseCoder:
        return self.coders[layer]

    def __iter__(self):
        return iter(self.coders)

    @property
    def d_sae(self) -> list[int]:
        return [c.cfg.d_sae for c in self.coders]

    def to(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> "TranscoderSet":
        """A copy on ``device`` in ``dtype`` (the coders' configs are shared)."""
        moved = []
        for coder in self.coders:
            new = SparseCoder(coder.cfg, dtype=dtype or coder.W_enc.dtype)
            new.load_state_dict({k: v.to(dtype or v.dtype) for k, v in coder.state_dict().items()})
            moved.append(new.to(device) if device is not None else new)
        return TranscoderSet(moved, self.path, self.scan)


def layer_of(coder: SparseCoder, source: Path) -> int:
    """The layer whose MLP ``coder`` replaces; one line if its hooks are not an MLP's input/output."""
    cfg = coder.cfg
    m = _LAYER.match(cfg.hook_in)
    if cfg.kind != "transcoder" or m is None or (cfg.hook_in, cfg.hook_out) != transcoder_hooks(int(m.group(1))):
        raise TranscoderSetError(
            f"--transcoders {source}: {cfg.kind} {cfg.hook_in} -> {cfg.hook_out} is not an MLP transcoder "
            "(expected blocks.L.ln2.hook_normalized -> blocks.L.hook_mlp_out)"
        )
    return int(m.group(1))


def check_fits(transcoders: TranscoderSet, model, model_name: str | None = None) -> None:
    """One line when ``transcoders`` do not belong to ``model``: layer count, widths or model name."""
    where = transcoders.path or "transcoders"
    n_layers, d_model = model.cfg.n_layers, model.cfg.d_model
    if len(transcoders) != n_layers:
        raise TranscoderSetError(f"--transcoders {where}: {len(transcoders)} layers of transcoders, "
                                 f"but the model has {n_layers} layers: they belong to another model")
    for layer, coder in enumerate(transcoders):
        cfg = coder.cfg
        if (cfg.d_in, cfg.d_out) != (d_model, d_model):
            raise TranscoderSetError(f"--transcoders {where}: layer {layer}'s transcoder has widths {cfg.d_in} -> "
                                     f"{cfg.d_out}, the model's MLPs {d_model} -> {d_model}: it belongs to another model")
    expected = model_name or getattr(model, "name", None)
    names = {c.cfg.model_name for c in transcoders if c.cfg.model_name}
    if expected and names and not any(_same_model(n, expected) for n in names):
        raise TranscoderSetError(f"--transcoders {where}: trained on model {sorted(names)[0]!r}, not {expected!r}")


def _same_model(a: str, b: str) -> bool:
    if a == b:
        return True
    try:  # a run folder may be named relatively or absolutely
        return Path(a).resolve() == Path(b).resolve()
    except (OSError, ValueError):
        return False


def load_transcoder_set(path: str | Path, model, model_name: str | None = None) -> TranscoderSet:
    """Load every transcoder under ``path`` (one per layer) and check that the set fits ``model``.

    ``model_name``: the name the transcoders must have been trained on (default ``model.name``; our own
    runs have none, and then only layer count and widths are checked)."""
    path = Path(path)
    if not path.is_dir():
        raise TranscoderSetError(f"--transcoders {path}: not a folder")
    folders = sorted(p for p in path.iterdir() if p.is_dir() and (p / CFG_FILE).is_file())
    if (path / CFG_FILE).is_file():
        folders = [path, *folders]
    if not folders:
        raise TranscoderSetError(f"--transcoders {path}: no dictionary sub-folders (with {CFG_FILE}); "
                                 "train one transcoder per layer with `tinyinterp sae train RUN --transcoder L`")
    by_layer: dict[int, tuple[Path, SparseCoder]] = {}
    for folder in folders:
        coder = load_dictionary(folder)
        layer = layer_of(coder, folder)
        if layer in by_layer:
            raise TranscoderSetError(f"--transcoders {path}: two transcoders for layer {layer} "
                                     f"({by_layer[layer][0].name} and {folder.name}); keep one")
        by_layer[layer] = (folder, coder)
    n_layers = model.cfg.n_layers
    extra = sorted(l for l in by_layer if l >= n_layers)
    if extra:
        raise TranscoderSetError(f"--transcoders {path}: a transcoder for layer {extra[0]}, but the model has "
                                 f"{n_layers} layers: they belong to another model")
    missing = [l for l in range(n_layers) if l not in by_layer]
    if missing:
        raise TranscoderSetError(f"--transcoders {path}: no transcoder for layer(s) {missing}; "
                                 f"the set needs one per layer 0..{n_layers - 1}")
    dtype = next(model.parameters()).dtype
    coders = [by_layer[l][1].to(dtype) for l in range(n_layers)]
    for c in coders:
        c.requires_grad_(False)
    transcoders = TranscoderSet(coders, path, scan=path.name)
    check_fits(transcoders, model, model_name)
    log.info("loaded %d transcoders from %s (widths %s)", n_layers, path, transcoders.d_sae)
    return transcoders
