"""The README's "tinyinterp models in TransformerLens" snippets run as written (nnsight's here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.readme import python_block

ROOT = Path(__file__).resolve().parents[4]


def test_readme_nnsight_snippet_runs_as_written(tmp_path, tiny_tokenizer):
    pytest.importorskip("nnsight")
    import torch

    from tinyinterp.runs import rundir
    from tinyinterp.models.transformer import HookedTransformer
    from tinyinterp.models.zoo import preset_config

    torch.manual_seed(0)
    model = HookedTransformer(preset_config("test-tiny", d_vocab=tiny_tokenizer.vocab_size), tokenizer=tiny_tokenizer)
    rundir.save_run(tmp_path / "runs" / "my", model, tiny_tokenizer)  # the snippet loads "runs/my"
    code = python_block("from nnsight import NNsight")
    script = tmp_path / "snippet.py"  # a file: nnsight reads the trace block's source
    script.write_text(code, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    n_tokens = len(model.to_tokens("Once upon a time, Lily found a")[0])
    heads = model.cfg.n_heads
    first = done.stdout.strip().splitlines()[-1]
    assert first.startswith(f"torch.Size([1, {heads}, {n_tokens}, {n_tokens}]) torch.Size([1, {n_tokens}, 1])")
