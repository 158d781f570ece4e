"""Units an index is built over: MLP neurons, or the features of a sparse dictionary (SAE / transcoder).

The neuron index (:mod:`.neuron_index`), its queries that re-run the model (:mod:`.neuron_query`,
:mod:`.neuron_search`) and the explanation records (``tinyinterp.explain.records``) see units only
through a :class:`UnitSource`: which hook each index layer reads, how that hook's activation becomes
the units' activations, and which residual-stream direction each unit writes (for logit effects).

- :class:`NeuronUnits`: every ``blocks.{l}.mlp.hook_post``, one index layer per model layer; the
  activation is the hook's own (identity); the output direction of neuron ``n`` is ``W_out[l, n]``.
- :class:`FeatureUnits`: ONE index layer (layer 0) reading the dictionary's ``hook_in``; the activation
  is ``coder.encode(x)`` (TopK, at most ``k`` non-zero per token). The training's input normalisation
  (``cfg.input_scale``) is folded into the saved encoder (``SparseCoder.fold_scales``), so raw hook
  activations go in; a dictionary whose ``input_scale`` is not folded does not exist on disk. The output
  direction of feature ``i`` is its decoder row ``W_dec[i]`` (output scale folded in too: raw units at
  ``hook_out``), usable for logit effects only when ``hook_out`` writes the residual stream
  (``hook_mlp_out``, ``hook_attn_out``, ``hook_resid_*``); other hooks get no logit effects.

The activation pass stops the forward after the last hook a source reads, so a feature index of a
layer-0 dictionary runs only block 0.

    >>> units = FeatureUnits(load_dictionary(dict_dir), model)
    >>> units.hook_names()                       # ["blocks.0.ln2.hook_normalized"]
    >>> units.activations(0, acts)               # (..., d_in) -> (..., d_sae)
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import torch

from tinyinterp.errors import TinyinterpError
from tinyinterp.interp.inputs import MLP_HOOK, mlp_hook_names

log = logging.getLogger(__name__)

UNITS_NEURONS = "neurons"
UNITS_FEATURES = "features"
_RESIDUAL_WRITES = re.compile(r"^blocks\.\d+\.(hook_mlp_out|hook_attn_out|hook_resid_pre|hook_resid_mid|hook_resid_post)$")


class UnitSource:
    """What an index is built over. ``n_layers`` x ``width`` units; index layer ``l`` reads ``hook_names()[l]``."""

    kind: str
    """"neurons" or "features" (``meta.json``'s ``units``)."""
    unit: str
    """One of them, for messages: "neuron" / "feature"."""
    n_layers: int
    width: int

    def hook_names(self) -> list[str]:
        raise NotImplementedError

    def hook(self, layer: int) -> str:
        return self.hook_names()[layer]

    def activations(self, layer: int, acts: torch.Tensor) -> torch.Tensor:
        """The units' activations ``(..., width)`` float32 from the hook's activation ``(..., d_hook)``."""
        raise NotImplementedError

    def unit_activations(self, layer: int, acts: torch.Tensor, units) -> torch.Tensor:
        """``activations(layer, acts)[..., units]`` (a neuron source selects before any work)."""
        return self.activations(layer, acts)[..., units]

    def output_directions(self) -> torch.Tensor | None:
        """``(n_layers, width, d_model)`` residual-stream directions for logit effects, or None."""
        return None

    def logit_effects(self, n_top: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def meta(self, index_dir: Path) -> dict:
        """Fields of the index's ``meta.json`` that say what the units are."""
        return {}

    def fingerprint(self) -> dict:
        """What must match for a resumed build to continue (saved with the progress file)."""
        return {}


class NeuronUnits(UnitSource):
    """The MLP neurons of every layer (``mlp.hook_post``), identity activation, ``W_out`` rows."""

    kind, unit = UNITS_NEURONS, "neuron"

    def __init__(self, model):
        self.model = model
        self._hooks = mlp_hook_names(model)
        self.n_layers, self.width = model.cfg.n_layers, model.cfg.d_mlp

    def hook_names(self) -> list[str]:
        return self._hooks

    def hook(self, layer: int) -> str:
        return MLP_HOOK.format(layer=layer)

    def activations(self, layer: int, acts: torch.Tensor) -> torch.Tensor:
        return acts.detach().float()

    def unit_activations(self, layer: int, acts: torch.Tensor, units) -> torch.Tensor:
        return acts[..., units].detach().float()

    def logit_effects(self, n_top: int) -> dict[str, torch.Tensor]:
        from tinyinterp.interp.neuron_logits import logit_effects

        return logit_effects(self.model, n_top=n_top)


class FeatureUnits(UnitSource):
    """The features of one sparse dictionary: layer 0 = the dictionary, ``coder.encode`` of ``hook_in``."""

    kind, unit = UNITS_FEATURES, "feature"

    def __init__(self, coder, model, dictionary_dir: str | Path | None = None):
        from tinyinterp.dictionaries.formats import check_against_model

        check_against_model(coder, model)  # one line: hook missing, or widths of another model
        self.model, self.dictionary_dir = model, Path(dictionary_dir) if dictionary_dir is not None else None
        device = next(iter(model.parameters()), torch.empty(0)).device if hasattr(model, "parameters") else "cpu"
        self.coder = coder.to(device).eval()
        self.cfg = coder.cfg
        self.n_layers, self.width = 1, coder.cfg.d_sae

    @classmethod
    def load(cls, dictionary_dir: str | Path, model) -> "FeatureUnits":
        from tinyinterp.dictionaries.formats import load_dictionary

        return cls(load_dictionary(dictionary_dir), model, dictionary_dir)

    def hook_names(self) -> list[str]:
        return [self.cfg.hook_in]

    def activations(self, layer: int, acts: torch.Tensor) -> torch.Tensor:
        x = acts.detach()
        if x.dim() > 3 or (x.dim() == 3 and x.shape[-1] != self.cfg.d_in):  # attention hooks: heads flattened
            x = x.flatten(-2)
        with torch.no_grad():
            return self.coder.encode(x.to(self.coder.W_enc.dtype)).float()

    def output_directions(self) -> torch.Tensor | None:
        if not _RESIDUAL_WRITES.match(self.cfg.hook_out) or self.cfg.d_out != self.model.cfg.d_model:
            return None
        return self.coder.W_dec.detach()[None]  # (1, d_sae, d_model)

    def logit_effects(self, n_top: int) -> dict[str, torch.Tensor]:
        from tinyinterp.interp.neuron_logits import direction_logit_effects

        directions = self.output_directions()
        if directions is None:
            raise TinyinterpError(f"dictionary output hook {self.cfg.hook_out} does not write the residual stream")
        return direction_logit_effects(self.model, directions, n_top)

    def meta(self, index_dir: Path) -> dict:
        where = ""
        if self.dictionary_dir is not None:
            where = os.path.relpath(self.dictionary_dir.resolve(), Path(index_dir).resolve())
        return {"units": UNITS_FEATURES, "dictionary": where, "dictionary_kind": self.cfg.kind,
                "hook_in": self.cfg.hook_in, "hook_out": self.cfg.hook_out, "d_sae": self.cfg.d_sae, "dict_k": self.cfg.k}

    def fingerprint(self) -> dict:
        c = self.coder
        # a retrained dictionary in the same folder must not resume an old build: hash a few weights
        probe = float(c.W_enc.detach().double().sum() + c.W_dec.detach().double().abs().sum() + c.b_enc.detach().double().sum())
        return {"units": UNITS_FEATURES, "hook_in": self.cfg.hook_in, "d_sae": self.cfg.d_sae, "dict_k": self.cfg.k,
                "weights": repr(probe)}
