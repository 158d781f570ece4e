"""TinyModel's sparse MLPs / SAEs load from local files in their exact format and reconstruct as theirs do.

The files are made the way tinymodel 0.1.2 makes them: ``SparseMLP`` is ``nn.Linear(d, n)`` -> ReLU ->
``nn.Linear(n, d)``, and its hub files are ``torch.save``d state dicts of those two layers.
"""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file
from torch import nn

from tinyinterp.dictionaries import DictionaryConfig, DictionaryError, TrainConfig, load_dictionary, save_dictionary
from tinyinterp.dictionaries.tinymodel import hooks_for_tag


def _sparse_mlp_state(d_in: int, n: int, d_out: int, seed: int) -> dict[str, torch.Tensor]:
    """A state dict with TinyModel's SparseMLP names and shapes (its two nn.Linear layers), biases non-zero."""
    torch.manual_seed(seed)
    encoder, decoder = nn.Linear(d_in, n), nn.Linear(n, d_out)
    return {**{f"encoder.{k}": v.detach().clone() for k, v in encoder.state_dict().items()},
            **{f"decoder.{k}": v.detach().clone() for k, v in decoder.state_dict().items()}}


def _theirs(state: dict[str, torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """SparseMLP.get_acts and SparseMLP.__call__, written out from the raw tensors."""
    acts = torch.relu(x @ state["encoder.weight"].T + state["encoder.bias"])
    return acts, acts @ state["decoder.weight"].T + state["decoder.bias"]


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(d=st.integers(2, 24), n=st.integers(1, 64), layer=st.integers(0, 3), tag=st.sampled_from(["M", "A", "Mo", "Ra", "Rm"]),
       seed=st.integers(0, 2**16))
def test_a_tinymodel_file_reconstructs_as_tinymodel_does(tmp_path_factory, d, n, layer, tag, seed):
    state = _sparse_mlp_state(d, n, d, seed)
    path = tmp_path_factory.mktemp("tm") / f"{tag}{layer}_S-2_R1_P0.pt"
    torch.save(state, path)
    coder = load_dictionary(path)
    assert coder.cfg.activation == "relu" and coder.cfg.k == n and coder.cfg.apply_b_dec_to_input is False
    assert (coder.cfg.kind, coder.cfg.hook_in, coder.cfg.hook_out) == hooks_for_tag(path.stem)
    x = torch.randn(11, d, generator=torch.Generator().manual_seed(seed)) * 3
    acts, recon = _theirs(state, x)
    assert torch.allclose(coder.encode(x), acts, atol=1e-5)
    assert torch.allclose(coder(x), recon, atol=1e-5)
    values, indices, _ = coder.encode_topk(x)  # the sparse form keeps every feature of a ReLU dictionary
    assert torch.allclose(coder.decode_topk(values, indices), recon, atol=1e-5)


def test_tags_map_to_the_hooks_tinymodel_reads():
    # tinymodel.lm.TinyModel.sparse_mlp: M reads res_mlp (= attn_out + x; no LayerNorm) and predicts the MLP's output
    assert hooks_for_tag("M2_S-2_R1_P0") == ("transcoder", "blocks.2.hook_resid_mid", "blocks.2.hook_mlp_out")
    assert hooks_for_tag("A1") == ("sae", "blocks.1.hook_attn_out", "blocks.1.hook_attn_out")
    assert hooks_for_tag("Mo3_S-1_B0_P0") == ("sae", "blocks.3.hook_mlp_out", "blocks.3.hook_mlp_out")
    with pytest.raises(DictionaryError, match="not a TinyModel tag"):
        hooks_for_tag("weights")


def test_a_folder_with_one_file_and_a_safetensors_copy_load_alike(tmp_path):
    state = _sparse_mlp_state(8, 30, 8, seed=5)
    (tmp_path / "pt").mkdir()
    torch.save(state, tmp_path / "pt" / "M0_S-2_R1_P0.pt")
    (tmp_path / "st").mkdir()
    save_file(state, str(tmp_path / "st" / "M0_S-2_R1_P0.safetensors"))
    a, b = load_dictionary(tmp_path / "pt"), load_dictionary(tmp_path / "st")
    assert a.cfg == b.cfg
    for name, t in a.tensors().items():
        assert torch.equal(t, b.tensors()[name])


def test_given_hooks_override_the_file_name(tmp_path):
    torch.save(_sparse_mlp_state(8, 20, 6, seed=1), tmp_path / "my_transcoder.pt")
    coder = load_dictionary(tmp_path / "my_transcoder.pt", "blocks.0.ln2.hook_normalized", "blocks.0.hook_mlp_out")
    assert (coder.cfg.kind, coder.cfg.d_in, coder.cfg.d_out, coder.cfg.d_sae) == ("transcoder", 8, 6, 20)


@pytest.mark.parametrize("tag, architecture", [("M1_S-2_R1_P0", "transcoder"), ("A2_S-2_R1_P0", "standard")])
def test_a_loaded_tinymodel_dictionary_saves_and_reloads_bit_identical(tmp_path, tag, architecture):
    state = _sparse_mlp_state(10, 40, 10, seed=7)
    torch.save(state, tmp_path / f"{tag}.pt")
    coder = load_dictionary(tmp_path / f"{tag}.pt")
    out = save_dictionary(coder, tmp_path / "ours")
    cfg = json.loads((out / "cfg.json").read_text())
    assert cfg["architecture"] == architecture and cfg["apply_b_dec_to_input"] is False and "k" not in cfg
    loaded = load_dictionary(out)
    assert loaded.cfg == coder.cfg
    for name, t in coder.tensors().items():
        assert torch.equal(t, loaded.tensors()[name]), name
    x = torch.randn(5, 10)
    assert torch.equal(loaded(x), coder(x)) and torch.allclose(loaded(x), _theirs(state, x)[1], atol=1e-5)


def test_a_saelens_standard_sae_folder_loads_as_relu(tmp_path):
    g = torch.Generator().manual_seed(2)
    t = {"W_enc": torch.randn(6, 12, generator=g), "b_enc": torch.randn(12, generator=g), "W_dec": torch.randn(12, 6, generator=g),
         "b_dec": torch.randn(6, generator=g)}
    save_file(t, str(tmp_path / "sae_weights.safetensors"))
    (tmp_path / "cfg.json").write_text(json.dumps({"architecture": "standard", "d_in": 6, "d_sae": 12, "apply_b_dec_to_input": True,
                                                   "normalize_activations": "none", "metadata": {"hook_name": "blocks.0.hook_resid_post"}}))
    coder = load_dictionary(tmp_path)
    x = torch.randn(4, 6, generator=g)
    expected = torch.relu((x - t["b_dec"]) @ t["W_enc"] + t["b_enc"]) @ t["W_dec"] + t["b_dec"]  # SAELens StandardSAE
    assert coder.cfg.activation == "relu" and torch.allclose(coder(x), expected, atol=1e-5)


def _one_line_error(path, match):
    with pytest.raises(DictionaryError, match=match) as info:
        load_dictionary(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


class _Payload:
    def __reduce__(self):
        return (print, ("pwned",))


def test_bad_tinymodel_files_are_one_line(tmp_path, capsys):
    state = _sparse_mlp_state(4, 8, 4, seed=0)
    torch.save({**state, "extra": torch.zeros(1)}, tmp_path / "M0_extra.pt")
    _one_line_error(tmp_path / "M0_extra.pt", "expected TinyModel's tensors")
    torch.save({**state, "encoder.weight": torch.zeros(8, 4, 2)}, tmp_path / "M0_shape.pt")
    _one_line_error(tmp_path / "M0_shape.pt", "do not make")
    torch.save({"encoder.weight": _Payload()}, tmp_path / "M0_code.pt")
    _one_line_error(tmp_path / "M0_code.pt", "refused")
    assert "pwned" not in capsys.readouterr().out
    (tmp_path / "M0_torn.pt").write_bytes(b"PK\x03\x04 not really a zip")
    _one_line_error(tmp_path / "M0_torn.pt", "unreadable")
    torch.save({**state, "decoder.bias": torch.full((4,), float("nan"))}, tmp_path / "M0_nan.pt")
    _one_line_error(tmp_path / "M0_nan.pt", "finite")
    torch.save(state, tmp_path / "weights.pt")
    _one_line_error(tmp_path / "weights.pt", "not a TinyModel tag")
    (tmp_path / "notes.txt").write_text("x")
    _one_line_error(tmp_path / "notes.txt", "not a dictionary folder")
    two = tmp_path / "two"
    two.mkdir()
    torch.save(state, two / "M0_a.pt")
    torch.save(state, two / "M1_b.pt")
    _one_line_error(two, "must hold one")


def test_relu_dictionaries_have_no_topk_cap_and_are_not_trained_here(tmp_path):
    with pytest.raises(DictionaryError, match="no TopK cap"):
        DictionaryConfig("sae", "h", "h", 4, 4, 16, 4, activation="relu")
    with pytest.raises(DictionaryError, match="activation must be"):
        DictionaryConfig("sae", "h", "h", 4, 4, 16, 4, activation="jumprelu")
    from tinyinterp.dictionaries.training import DictionaryTrainer

    with pytest.raises(DictionaryError, match="only TopK"):
        DictionaryTrainer(DictionaryConfig("sae", "h", "h", 4, 4, 16, 16, activation="relu"), TrainConfig(), tmp_path)


def test_download_reads_the_hub_cache_offline_and_is_one_line_without_it(tmp_path, monkeypatch):
    from tinyinterp.dictionaries.tinymodel import DEFAULT_FILES, HUB_REPO, download_tinymodel

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DictionaryError, match="unreachable") as info:
        download_tinymodel("M2")
    assert "\n" not in str(info.value) and DEFAULT_FILES["M2"] in str(info.value)
    # the hub cache's layout: models--owner--name/refs/main names the snapshot holding the file
    repo = tmp_path / "hf" / "hub" / ("models--" + HUB_REPO.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    target = repo / "snapshots" / ("0" * 40) / (DEFAULT_FILES["M2"] + ".pt")
    target.parent.mkdir(parents=True)
    state = _sparse_mlp_state(6, 12, 6, seed=3)
    torch.save(state, target)
    path = download_tinymodel("M2")
    assert path == target
    coder = load_dictionary(path)
    assert (coder.cfg.hook_in, coder.cfg.hook_out) == ("blocks.2.hook_resid_mid", "blocks.2.hook_mlp_out")
