"""Run directories: round trip, atomic writes, one-line errors for missing/corrupt/mismatched files."""

import json

import pytest
import torch

import tinyinterp
from tinyinterp import rundir
from tinyinterp.errors import RunDirError


def test_round_trip_preserves_weights_and_tokenizer(tiny_run, tiny_tokenizer):
    model = tinyinterp.load(tiny_run)
    again = rundir.load_run(tiny_run)
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name
    assert model.tokenizer.fingerprint() == tiny_tokenizer.fingerprint()
    assert model.cfg.d_vocab == tiny_tokenizer.vocab_size
    config = json.loads((tiny_run / rundir.CONFIG_FILE).read_text())
    assert config["model"]["preset"] == "test-tiny"
    # safetensors, never pickle
    assert (tiny_run / rundir.WEIGHTS_FILE).read_bytes()[:8] != b"\x80\x04\x95"


def test_missing_weights_names_the_file(tiny_run):
    (tiny_run / rundir.WEIGHTS_FILE).unlink()
    with pytest.raises(RunDirError, match="model.safetensors: weights file not found"):
        rundir.load_run(tiny_run)


def test_corrupt_weights_names_the_file(tiny_run):
    (tiny_run / rundir.WEIGHTS_FILE).write_bytes(b"garbage" * 10)
    with pytest.raises(RunDirError, match="model.safetensors: corrupt safetensors file"):
        rundir.load_run(tiny_run)


def test_vocab_mismatch_names_the_tokenizer(tiny_run):
    config = json.loads((tiny_run / rundir.CONFIG_FILE).read_text())
    config["model"]["d_vocab"] += 7
    (tiny_run / rundir.CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(RunDirError, match=r"tokenizer.json: tokenizer has \d+ tokens but config.json says d_vocab"):
        rundir.load_run(tiny_run)


def test_shape_mismatch_names_the_weights(tiny_run, tiny_tokenizer):
    config = json.loads((tiny_run / rundir.CONFIG_FILE).read_text())
    config["model"]["d_model"] = 64
    (tiny_run / rundir.CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(RunDirError, match="model.safetensors: .* has shape"):
        rundir.load_run(tiny_run)


def test_corrupt_config_names_the_file(tiny_run):
    (tiny_run / rundir.CONFIG_FILE).write_text("{not json")
    with pytest.raises(RunDirError, match="config.json: not valid JSON"):
        rundir.load_run(tiny_run)
    (tiny_run / rundir.CONFIG_FILE).write_text(json.dumps({"model": {"d_model": 32, "n_layers": 1, "colour": 3}}))
    with pytest.raises(RunDirError, match="config.json: invalid model config"):
        rundir.load_run(tiny_run)


def test_atomic_write_leaves_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "x.json"
    rundir.atomic_write_json(target, {"v": 1})

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(rundir.os, "replace", boom)
    with pytest.raises(OSError):
        rundir.atomic_write_json(target, {"v": 2})
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"], "no temp file may be left behind"


def test_jsonl_reader_skips_a_torn_last_line(tmp_path):
    log = tmp_path / "metrics.jsonl"
    rundir.append_jsonl(log, {"step": 1})
    rundir.append_jsonl(log, {"step": 2})
    with open(log, "a") as f:
        f.write('{"step": 3, "lo')
    assert [r["step"] for r in rundir.read_jsonl(log)] == [1, 2]
