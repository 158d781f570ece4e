"""Bad input: one line each, nothing written."""

from __future__ import annotations

import json

import pytest

from tinyinterp.cli import main
from tinyinterp.dictionaries import DictionaryConfig, DictionaryError, SparseCoder, save_dictionary

from .conftest import SAE_HOOK


def _fails(argv, capsys, *needles):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err


def test_k_larger_than_the_width(dict_run, tmp_path, capsys):
    _fails(["sae", "train", str(dict_run), "--hook", SAE_HOOK, "--width", "8", "--k", "9", "--out", str(tmp_path / "o"),
            "--no-progress"], capsys, "--k 9", "width 8")
    assert not (tmp_path / "o").exists()


def test_a_hook_that_does_not_exist(dict_run, tmp_path, capsys):
    _fails(["sae", "train", str(dict_run), "--hook", "blocks.1.hook_resid_postt", "--out", str(tmp_path / "o"),
            "--no-progress"], capsys, "blocks.1.hook_resid_postt", "not a hook")
    _fails(["sae", "train", str(dict_run), "--transcoder", "7", "--out", str(tmp_path / "o"), "--no-progress"], capsys,
           "--transcoder 7")
    assert not (tmp_path / "o").exists()


def test_a_dictionary_of_another_model(dict_run, tmp_path, capsys):
    wrong = SparseCoder(DictionaryConfig("sae", SAE_HOOK, SAE_HOOK, 999, 999, 16, 4))
    save_dictionary(wrong, tmp_path / "wrong")
    _fails(["sae", "eval", str(dict_run), "--dict", str(tmp_path / "wrong"), "--no-progress"], capsys, "999", "another model")
    assert not (tmp_path / "wrong" / "eval.json").exists()
    other_hook = SparseCoder(DictionaryConfig("sae", "blocks.9.hook_mlp_out", "blocks.9.hook_mlp_out", 32, 32, 16, 4))
    save_dictionary(other_hook, tmp_path / "hook")
    _fails(["sae", "eval", str(dict_run), "--dict", str(tmp_path / "hook"), "--no-progress"], capsys, "blocks.9.hook_mlp_out")


def test_a_corrupt_weights_file(dict_run, trained_sae, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(trained_sae, broken)
    weights = broken / "sae_weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    _fails(["sae", "eval", str(dict_run), "--dict", str(broken), "--no-progress"], capsys, "sae_weights.safetensors")
    (broken / "cfg.json").write_text("{not json")
    _fails(["sae", "eval", str(dict_run), "--dict", str(broken), "--no-progress"], capsys, "cfg.json")
    assert not (broken / "eval.json").exists()


@pytest.mark.parametrize("field, value", [("k", 0), ("d_sae", -1), ("kind", "gated"), ("input_scale", float("nan"))])
def test_bad_configs_are_refused(field, value):
    fields = dict(kind="sae", hook_in=SAE_HOOK, hook_out=SAE_HOOK, d_in=8, d_out=8, d_sae=16, k=4)
    fields[field] = value
    with pytest.raises(DictionaryError):
        DictionaryConfig(**fields)


def test_a_transcoder_cfg_is_not_read_as_an_sae(tmp_path):
    coder = SparseCoder(DictionaryConfig("sae", SAE_HOOK, SAE_HOOK, 8, 8, 16, 4))
    save_dictionary(coder, tmp_path / "d")
    cfg = json.loads((tmp_path / "d" / "cfg.json").read_text())
    assert cfg["architecture"] == "topk"
