"""Run directories: round trip, atomic writes, one-line errors for missing/corrupt/mismatched files."""

import json

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tinyinterp
from tinyinterp.runs import rundir
from tinyinterp.io.atomic import atomic_write_json
from tinyinterp.errors import RunDirError
from tinyinterp.io.jsonl import append_jsonl, read_jsonl


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
    atomic_write_json(target, {"v": 1})

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(rundir.os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_json(target, {"v": 2})
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"], "no temp file may be left behind"


def test_jsonl_reader_skips_a_torn_last_line(tmp_path):
    log = tmp_path / "metrics.jsonl"
    append_jsonl(log, {"step": 1})
    append_jsonl(log, {"step": 2})
    with open(log, "a") as f:
        f.write('{"step": 3, "lo')
    assert [r["step"] for r in read_jsonl(log)] == [1, 2]


def test_tokenizer_from_another_run_with_the_same_vocab_size_is_refused(tiny_run, tiny_tokenizer):
    # Another run's tokenizer of the same size: here the same tokens with two ids swapped, so every
    # size check passes and only the fingerprint can tell (generate would print the wrong words).
    spec = json.loads((tiny_run / rundir.TOKENIZER_FILE).read_text(encoding="utf-8"))
    vocab = spec["model"]["vocab"]
    a, b = sorted(vocab, key=vocab.get)[100:102]
    vocab[a], vocab[b] = vocab[b], vocab[a]
    (tiny_run / rundir.TOKENIZER_FILE).write_text(json.dumps(spec), encoding="utf-8")
    from tinyinterp.data.tokenizer import Tokenizer

    swapped = Tokenizer.load(tiny_run / rundir.TOKENIZER_FILE)
    assert swapped.vocab_size == tiny_tokenizer.vocab_size and swapped.fingerprint() != tiny_tokenizer.fingerprint()
    with pytest.raises(RunDirError, match=r"tokenizer.json: tokenizer [0-9a-f]{12} is not the one this model was trained with"):
        tinyinterp.load(tiny_run)


def _data_start(path) -> int:
    """Offset of the first tensor byte: 8-byte header length + the JSON header."""
    return 8 + int.from_bytes(path.read_bytes()[:8], "little")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.floats(0, 1, exclude_max=True), bit=st.integers(0, 7))
def test_any_flipped_bit_in_the_weights_is_refused(tiny_run, position, bit):
    weights = tiny_run / rundir.WEIGHTS_FILE
    original = weights.read_bytes()
    start = _data_start(weights)
    at = start + int(position * (len(original) - start))
    damaged = bytearray(original)
    damaged[at] ^= 1 << bit
    weights.write_bytes(bytes(damaged))
    try:
        with pytest.raises(rundir.CorruptWeightsError, match="model.safetensors: corrupt file"):
            rundir.load_run(tiny_run)
    finally:
        weights.write_bytes(original)
    rundir.load_run(tiny_run)  # the intact file still loads


def test_info_reports_a_corrupt_weights_file(tiny_run):
    from tinyinterp.cli.info import describe

    assert "weights: ok (sha256 verified)" in describe(str(tiny_run))
    weights = tiny_run / rundir.WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[_data_start(weights) + 10] ^= 0xFF
    weights.write_bytes(bytes(data))
    report = describe(str(tiny_run))
    assert "weights: " in report and "corrupt file" in report


def test_checkpoint_weights_are_verified_too(tmp_path, tiny_model):
    from training import checkpoint as ckpt

    opt = torch.optim.AdamW(tiny_model.parameters())
    path = ckpt.save_checkpoint(tmp_path, 1, tiny_model, opt, {"tokens": 0}, {"model": tiny_model.cfg.to_dict()})
    weights = path / rundir.WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(rundir.CorruptWeightsError):
        ckpt.load_checkpoint(path, tiny_model)


def test_weights_without_a_recorded_checksum_still_load(tiny_run):
    from safetensors.torch import load_file, save_file

    weights = tiny_run / rundir.WEIGHTS_FILE
    save_file(load_file(str(weights)), str(weights))  # as written by tinyinterp before checksums
    rundir.load_run(tiny_run)
