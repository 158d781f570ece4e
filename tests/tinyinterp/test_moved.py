"""tinyinterp/_moved.py: the old flat module paths import the moved modules themselves (no copies, no wrappers).

regroup-codemod: keep old module paths (this file names the old paths on purpose)
"""

import importlib
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

import tinyinterp
from tinyinterp._moved import MOVED

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("old, new", sorted(MOVED.items()))
def test_old_path_is_the_moved_module(old, new):
    moved = importlib.import_module(new)
    assert importlib.import_module(old) is moved
    assert sys.modules[old] is moved
    assert getattr(tinyinterp, old.rsplit(".", 1)[1]) is moved  # `import tinyinterp.X` then `tinyinterp.X.f`
    assert moved.__name__ == new and moved.__spec__.name == new  # the real module is not renamed by the alias
    assert not (REPO_ROOT / (old.replace(".", "/") + ".py")).exists()


def test_documented_old_paths_keep_working():
    from tinyinterp.corpus_readers import iter_documents
    from tinyinterp.data.corpus_readers import iter_documents as moved_iter_documents
    from tinyinterp.model import HookedTransformer
    from tinyinterp.paths import data_dir
    from tinyinterp.data.paths import data_dir as moved_data_dir
    import tinyinterp.models.transformer
    import tinyinterp.zoo

    assert iter_documents is moved_iter_documents and data_dir is moved_data_dir
    assert HookedTransformer is tinyinterp.models.transformer.HookedTransformer is tinyinterp.HookedTransformer
    assert "tinystories-33m" in tinyinterp.zoo.PRESETS
    assert callable(tinyinterp.load)


def test_monkeypatch_through_an_old_path_patches_the_moved_module(monkeypatch):
    import tinyinterp.runs.layout

    monkeypatch.setattr("tinyinterp.runlayout.METRICS_FILE", "patched.jsonl")
    assert tinyinterp.runs.layout.METRICS_FILE == "patched.jsonl"


def test_pickles_naming_old_paths_load():
    from tinyinterp.models.config import ModelConfig

    assert pickle.loads(b"ctinyinterp.config\nModelConfig\n.") is ModelConfig


def test_unknown_names_still_fail():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("tinyinterp.no_such_module")


def test_python_dash_m_with_an_old_path_runs_the_moved_program():
    out = subprocess.run([sys.executable, "-m", "tinyinterp.demo", "--help"], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "usage: python -m tinyinterp.cli.demo" in out.stdout
