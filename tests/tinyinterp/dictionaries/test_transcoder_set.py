"""A transcoder set from one activation stream: same dictionaries as one pass per layer, one model pass, resumable."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from tinyinterp.runs import rundir, layout as runlayout
from tinyinterp.cli import main
from tinyinterp.data.corpus import TokenizedCorpus
from tinyinterp.dictionaries import TrainConfig, load_dictionary
from tinyinterp.dictionaries.config import transcoder_hooks
from tinyinterp.dictionaries.activations import ActivationStream
from tinyinterp.dictionaries.training import TRAIN_LOG, DictionaryTrainer
from tinyinterp.dictionaries.transcoder_set import MultiHookStream, train_transcoder_set, transcoder_configs


def _train():
    return TrainConfig(tokens=1536, batch_tokens=256, buffer_tokens=512, checkpoint_every=2, lr=1e-3, seq_len=32,
                       model_batch=4)


def _setup(dict_run):
    model = rundir.load_run(dict_run).eval()
    return model, TokenizedCorpus.open(runlayout.corpus_dir(dict_run))


def _count_forwards(model):
    calls = []
    # windows of the stream only (the 2-token width probe of the configs is not a training pass)
    handle = model.hook_embed.register_forward_hook(lambda mod, inp, out: calls.append(1) if out.shape[1] > 2 else None)
    return calls, handle


def test_each_layer_equals_its_own_pass_and_the_model_runs_once(dict_run, tmp_path):
    model, corpus = _setup(dict_run)
    n_layers = model.cfg.n_layers
    assert n_layers >= 2
    calls, handle = _count_forwards(model)
    coders = train_transcoder_set(model, corpus, 64, 8, _train(), tmp_path / "set", progress=False)
    set_forwards = len(calls)
    assert sorted(coders) == list(range(n_layers))
    for layer in range(n_layers):
        cfg = transcoder_configs(model, 64, 8, [layer])[0]
        calls.clear()
        t = _train()  # the stream of seed 0 (as the set's), the coder's initialisation of seed `layer` (as the set's)
        stream = ActivationStream(model, corpus, cfg, t.seq_len, t.model_batch, t.buffer_tokens, seed=t.seed)
        alone = DictionaryTrainer(cfg, dataclasses.replace(t, seed=layer), tmp_path / f"alone{layer}", stream).run(
            progress=False)
        assert len(calls) == set_forwards  # one layer alone costs as many forwards as the whole set
        saved = load_dictionary(tmp_path / "set" / runlayout.transcoder_layer_name(layer))
        assert (saved.cfg.hook_in, saved.cfg.hook_out) == transcoder_hooks(layer)
        for name, t in alone.tensors().items():
            torch.testing.assert_close(saved.tensors()[name], t, rtol=1e-5, atol=1e-6)
    handle.remove()


def test_a_killed_set_resumes_every_layer(dict_run, tmp_path, monkeypatch):
    model, corpus = _setup(dict_run)
    real = MultiHookStream.batches

    def dies(self, batch_tokens):
        for i, rows in enumerate(real(self, batch_tokens)):
            if i == 3:
                raise KeyboardInterrupt
            yield rows

    monkeypatch.setattr(MultiHookStream, "batches", dies)
    with pytest.raises(KeyboardInterrupt):
        train_transcoder_set(model, corpus, 64, 8, _train(), tmp_path, progress=False)
    monkeypatch.setattr(MultiHookStream, "batches", real)
    first = tmp_path / runlayout.transcoder_layer_name(0)
    assert json.loads((first / "checkpoint" / "state.json").read_text())["step"] == 2
    assert not (first / "cfg.json").exists()
    train_transcoder_set(model, corpus, 64, 8, _train(), tmp_path, progress=False)
    for layer in range(model.cfg.n_layers):
        folder = tmp_path / runlayout.transcoder_layer_name(layer)
        steps = [json.loads(line)["step"] for line in (folder / TRAIN_LOG).read_text().splitlines()]
        assert steps == sorted(steps) and steps[-1] == 6
        assert load_dictionary(folder).cfg.hook_in == transcoder_hooks(layer)[0]


def test_cli_trains_the_set_into_the_default_folder(dict_run, capsys):
    assert main(["sae", "train", str(dict_run), "--transcoder", "all", "--width", "64", "--k", "8", "--tokens", "512",
                 "--batch-tokens", "256", "--buffer-tokens", "512", "--seq-len", "32", "--no-progress"]) == 0
    out = runlayout.dictionaries_dir(dict_run) / runlayout.TRANSCODERS_SET
    assert "transcoders:" in capsys.readouterr().out
    layers = sorted(p.name for p in out.iterdir())
    n = rundir.load_run(dict_run).cfg.n_layers
    assert layers == [runlayout.transcoder_layer_name(i) for i in range(n)]


def test_cli_refuses_bad_layer_words_and_a_cache(dict_run, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["sae", "train", str(dict_run), "--transcoder", "every", "--no-progress"])
    assert "'all'" in capsys.readouterr().err
    assert main(["sae", "train", str(dict_run), "--transcoder", "all", "--cache", str(tmp_path), "--out",
                 str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --cache") and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()
