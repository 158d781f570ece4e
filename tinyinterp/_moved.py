"""Old import paths of the modules that moved into folders: ``import tinyinterp.model`` is ``tinyinterp.models.transformer``.

The flat modules of tinyinterp's root moved into concept folders (``models/``, ``data/``, ``runs/``, ``io/``,
``cli/``). Their old dotted names stay importable as *the same module objects* (not copies, not wrapper
modules): code written against the old paths, monkeypatch targets, pickles, the entry points of an install made
before the move and ``python -m tinyinterp.demo`` keep working. New code imports the new paths (MOVED's values).

regroup-codemod: keep old module paths (this table is written by the regrouping codemod)
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys

MOVED = {
    "tinyinterp.atomic": "tinyinterp.io.atomic",
    "tinyinterp.checkpoints": "tinyinterp.runs.checkpoints",
    "tinyinterp.cli_support": "tinyinterp.cli.support",
    "tinyinterp.commands": "tinyinterp.cli.commands",
    "tinyinterp.config": "tinyinterp.models.config",
    "tinyinterp.corpus": "tinyinterp.data.corpus",
    "tinyinterp.corpus_readers": "tinyinterp.data.corpus_readers",
    "tinyinterp.demo": "tinyinterp.cli.demo",
    "tinyinterp.devices": "tinyinterp.models.devices",
    "tinyinterp.generation": "tinyinterp.models.generation",
    "tinyinterp.info": "tinyinterp.cli.info",
    "tinyinterp.instruct_format": "tinyinterp.data.instruct_format",
    "tinyinterp.jsonl": "tinyinterp.io.jsonl",
    "tinyinterp.lexicon": "tinyinterp.data.lexicon",
    "tinyinterp.loading": "tinyinterp.models.loading",
    "tinyinterp.model": "tinyinterp.models.transformer",
    "tinyinterp.paths": "tinyinterp.data.paths",
    "tinyinterp.rundir": "tinyinterp.runs.rundir",
    "tinyinterp.runlayout": "tinyinterp.runs.layout",
    "tinyinterp.runlock": "tinyinterp.runs.lock",
    "tinyinterp.tl_tokens": "tinyinterp.models.tl_tokens",
    "tinyinterp.tl_weights": "tinyinterp.models.tl_weights",
    "tinyinterp.tokenizer": "tinyinterp.data.tokenizer",
    "tinyinterp.tokenizer_hf": "tinyinterp.data.tokenizer_hf",
    "tinyinterp.zoo": "tinyinterp.models.zoo",
}


class _AliasLoader(importlib.abc.Loader):
    """Imports the new module and leaves *it* in ``sys.modules`` under the old name (the import system returns it)."""

    def __init__(self, target: str):
        self.target = target

    def create_module(self, spec):
        return None  # a throwaway placeholder: exec_module swaps in the real module

    def exec_module(self, module) -> None:
        sys.modules[module.__name__] = importlib.import_module(self.target)

    def get_code(self, fullname):
        """``python -m <old name>``: runpy runs the new module's code."""
        return importlib.util.find_spec(self.target).loader.get_code(self.target)


class _AliasFinder(importlib.abc.MetaPathFinder):
    """First on ``sys.meta_path``: an old name always means the moved module, even where another finder (an
    editable install made from an older checkout) would still find an old file of that name."""

    def find_spec(self, fullname, path=None, target=None):
        new = MOVED.get(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(new), origin=new)


def install() -> None:
    if not any(isinstance(finder, _AliasFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AliasFinder())
