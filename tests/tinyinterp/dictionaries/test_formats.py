"""Formats: save -> load is bit-identical, the cfg carries SAELens's field names, sparsify folders load equal."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from tinyinterp.dictionaries import DictionaryConfig, SparseCoder, load_dictionary, save_dictionary
from tinyinterp.dictionaries.formats import hooks_for_hf_module


def _coder(kind="sae", d_in=16, d_out=16, width=40, k=5, seed=0):
    hooks = ("blocks.1.hook_resid_post",) * 2 if kind == "sae" else ("blocks.0.ln2.hook_normalized", "blocks.0.hook_mlp_out")
    coder = SparseCoder(DictionaryConfig(kind, *hooks, d_in, d_out, width, k, model_name="m"))
    coder.reset_parameters(torch.Generator().manual_seed(seed))
    with torch.no_grad():
        coder.b_enc.normal_(0, 0.1, generator=torch.Generator().manual_seed(seed + 1))
        coder.b_dec.normal_(0, 0.1, generator=torch.Generator().manual_seed(seed + 2))
    return coder


@pytest.mark.parametrize("kind, d_out", [("sae", 16), ("transcoder", 12)])
def test_save_then_load_is_bit_identical(tmp_path, kind, d_out):
    coder = _coder(kind, d_out=d_out)
    coder.fold_scales(0.5, 2.0 if kind == "transcoder" else 0.5)
    loaded = load_dictionary(save_dictionary(coder, tmp_path / "d"))
    assert loaded.cfg == coder.cfg
    for name, t in coder.tensors().items():
        assert torch.equal(t, loaded.tensors()[name]), name
    x = torch.randn(7, 16)
    assert torch.equal(coder(x), loaded(x))


def test_the_cfg_has_the_fields_saelens_reads(tmp_path):
    save_dictionary(_coder(), tmp_path / "d")
    cfg = json.loads((tmp_path / "d" / "cfg.json").read_text())
    assert cfg["architecture"] == "topk" and (cfg["d_in"], cfg["d_sae"], cfg["k"]) == (16, 40, 5)
    assert cfg["apply_b_dec_to_input"] is True and cfg["normalize_activations"] == "none"
    assert cfg["metadata"]["hook_name"] == "blocks.1.hook_resid_post" and cfg["metadata"]["sae_lens_version"].startswith("6")
    assert (tmp_path / "d" / "sae_weights.safetensors").is_file()


def test_folded_scales_act_on_raw_activations():
    coder = _coder()
    x = torch.randn(9, 16) * 7.0
    s = 0.25
    expected = coder(x * s) / s  # what the trained (normalised-space) coder gives, undone on output
    coder.fold_scales(s, s)
    assert torch.allclose(coder(x), expected, atol=1e-5)


def _sparsify_reference(enc_w, enc_b, w_dec, b_dec, k, x, transcode):
    """eai-sparsify's SparseCoder.encode/decode, written out: relu(linear(x - b_dec)), top-k, sum of rows."""
    pre = torch.relu(torch.nn.functional.linear(x if transcode else x - b_dec, enc_w, enc_b))
    values, idx = pre.topk(k, dim=-1)
    return (values.unsqueeze(-1) * w_dec[idx]).sum(-2) + b_dec


@pytest.mark.parametrize("transcode, folder", [(False, "h.1"), (True, "h.0.mlp")])
def test_a_sparsify_folder_loads_with_equal_reconstructions(tmp_path, transcode, folder):
    g = torch.Generator().manual_seed(3)
    d, n, k = 16, 48, 6
    tensors = {"encoder.weight": torch.randn(n, d, generator=g), "encoder.bias": torch.randn(n, generator=g) * 0.1,
               "W_dec": torch.randn(n, d, generator=g), "b_dec": torch.randn(d, generator=g) * 0.1}
    path = tmp_path / folder
    path.mkdir()
    save_file(tensors, str(path / "sae.safetensors"))
    (path / "cfg.json").write_text(json.dumps({"activation": "topk", "expansion_factor": 3, "normalize_decoder": True,
                                               "num_latents": n, "k": k, "multi_topk": False, "skip_connection": False,
                                               "transcode": transcode, "d_in": d}))
    coder = load_dictionary(path)
    assert (coder.cfg.hook_in, coder.cfg.hook_out) == hooks_for_hf_module(folder, transcode)
    x = torch.randn(20, d, generator=g)
    expected = _sparsify_reference(tensors["encoder.weight"], tensors["encoder.bias"], tensors["W_dec"], tensors["b_dec"],
                                   k, x, transcode)
    assert torch.allclose(coder(x), expected, atol=1e-5)
