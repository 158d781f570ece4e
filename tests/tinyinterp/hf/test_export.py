"""Export to Hugging Face: transformers, AutoTokenizer and the bridge open the folder offline and agree with us."""

import json

import pytest
import torch

import tinyinterp
from tests.support.hooks import compare_caches
from tinyinterp.runs import rundir
from tinyinterp.cli import main
from tinyinterp.errors import TinyinterpError
from tinyinterp.hf.export import export_model, export_run
from tinyinterp.hf.convert import NotExpressibleError
from tinyinterp.models.transformer import HookedTransformer
from tinyinterp.models.zoo import preset_config

TOL = 1e-4


@pytest.fixture(scope="module")
def stories(shared_data):
    text = (shared_data / "tinystories" / "train-v1-hf-head.txt").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip()][:120]


@pytest.fixture(scope="module")
def restricted_tokenizer(shared_data, stories):
    from tinyinterp.data.tokenizer import Tokenizer

    return Tokenizer.restricted_bpe(shared_data / "tokenizers" / "gpt2" / "tokenizer.json", stories, k=600, progress=False)


def _randomize(model: HookedTransformer, seed: int = 0) -> HookedTransformer:
    """Non-trivial biases and LayerNorm weights (init leaves them 0 / 1, hiding conversion mistakes)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if name.endswith(".w"):
                p.copy_(1 + 0.2 * noise)
            elif name.endswith((".b", "bias")):
                p.copy_(0.1 * noise)
            else:
                p.copy_(noise / p.shape[-1] ** 0.5)
    return model.eval()


def _run(tmp_path, tokenizer, preset: str, seed: int = 0, name: str = "run", **overrides):
    model = _randomize(HookedTransformer(preset_config(preset, d_vocab=tokenizer.vocab_size, **overrides), tokenizer), seed)
    return rundir.save_run(tmp_path / name, model, tokenizer)


@pytest.fixture(scope="module")
def neo_export(tmp_path_factory, restricted_tokenizer):
    """A GPT-Neo run (window 8, so local layers matter on short text) and its export."""
    tmp = tmp_path_factory.mktemp("neo")
    run = _run(tmp, restricted_tokenizer, "test-neo")
    return run, export_run(run, tmp / "hf")


def _tokens(tokenizer, stories, n_ctx=64):
    return torch.tensor([tokenizer.encode(" ".join(stories[:3]))[:n_ctx], tokenizer.encode(" ".join(stories[3:6]))[:n_ctx]])


def test_export_writes_a_folder_transformers_loads_offline(neo_export, stories):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run, out = neo_export
    assert sorted(p.name for p in out.iterdir()) >= ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    assert json.loads((out / "config.json").read_text())["architectures"] == ["GPTNeoForCausalLM"]
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp folder left behind
    ours = tinyinterp.load(run)
    hf = AutoModelForCausalLM.from_pretrained(out, attn_implementation="eager").eval()
    hf_tok = AutoTokenizer.from_pretrained(out)
    for story in stories:  # identical tokenization on the shared TinyStories text
        assert hf_tok(story)["input_ids"] == ours.tokenizer.encode(story)
    assert hf_tok.eos_token_id == ours.tokenizer.eot_id
    tokens = _tokens(ours.tokenizer, stories)
    assert tokens.shape[1] > 8  # longer than the local window
    with torch.no_grad():
        assert (ours(tokens) - hf(tokens).logits).abs().max() < TOL


def test_bridge_of_export_has_our_activations(neo_export, stories):
    run, out = neo_export
    ours = tinyinterp.load(run).process_weights()  # what the bridge's compatibility mode applies
    bridge = tinyinterp.load(out, backend="bridge")
    tokens = _tokens(ours.tokenizer, stories)
    with torch.no_grad():
        our_logits, our_cache = ours.run_with_cache(tokens)
        their_logits, their_cache = bridge.run_with_cache(tokens)
    assert {"blocks.1.attn.hook_pattern", "blocks.1.mlp.hook_post", "blocks.1.hook_resid_post"} <= set(their_cache.keys())
    assert compare_caches(our_cache, their_cache, "gpt_neo") < TOL
    assert (our_logits.log_softmax(-1) - their_logits.log_softmax(-1)).abs().max() < TOL


def test_export_then_import_is_bit_identical(neo_export):
    run, out = neo_export
    original, imported = tinyinterp.load(run), tinyinterp.load(out)
    assert imported.cfg.attn_types == original.cfg.attn_types and imported.cfg.window_size == 8
    a, b = original.state_dict(), imported.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert imported.tokenizer.encode("Lily saw a dog.") == original.tokenizer.encode("Lily saw a dog.")


def test_gpt2_style_run_exports_as_gpt2(tmp_path, restricted_tokenizer, stories):
    from transformers import AutoModelForCausalLM

    # legacy arch: untied unembedding; its bias is zeroed, so GPT-2 (whose lm_head has none) can hold it.
    run = _run(tmp_path, restricted_tokenizer, "test-tiny")
    model = tinyinterp.load(run)
    with torch.no_grad():
        model.unembed.bias.zero_()
    out = export_model(model, tmp_path / "hf")
    assert json.loads((out / "config.json").read_text())["architectures"] == ["GPT2LMHeadModel"]
    hf = AutoModelForCausalLM.from_pretrained(out, attn_implementation="eager").eval()
    tokens = _tokens(model.tokenizer, stories)
    with torch.no_grad():
        assert (model(tokens) - hf(tokens).logits).abs().max() < TOL
    imported = tinyinterp.load(out)
    assert all(torch.equal(imported.state_dict()[k], v) for k, v in model.state_dict().items() if k != "unembed.bias")


def test_inexpressible_runs_fail_with_one_line(tmp_path, restricted_tokenizer, capsys):
    legacy = _run(tmp_path, restricted_tokenizer, "test-tiny", name="legacy")  # trained-like non-zero unembedding bias
    assert main(["export", str(legacy), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "unembedding has a non-zero bias" in err and "\n" not in err
    assert not (tmp_path / "out").exists()

    scaled_local = HookedTransformer(preset_config("test-neo", d_vocab=restricted_tokenizer.vocab_size, use_attn_scale=True),
                                     restricted_tokenizer)
    with pytest.raises(NotExpressibleError, match="local .* scaled attention"):
        export_model(scaled_local, tmp_path / "out")
    biased_local = _randomize(HookedTransformer(
        preset_config("test-neo", d_vocab=restricted_tokenizer.vocab_size, qkv_bias=True), restricted_tokenizer))
    with pytest.raises(NotExpressibleError, match="q/k/v biases"):
        export_model(biased_local, tmp_path / "out")


def test_cli_export_replaces_an_earlier_export_but_not_other_folders(neo_export, tmp_path, capsys):
    run, _ = neo_export
    out = tmp_path / "hf"
    assert main(["export", str(run), "--out", str(out)]) == 0
    assert main(["export", str(run), "--out", str(out)]) == 0  # re-export over an earlier export
    assert tinyinterp.load(out).cfg.n_layers == 2
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(TinyinterpError, match="not an earlier Hugging Face export"):
        export_run(run, tmp_path / "notes")
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"


def test_folded_layernorm_model_exports_as_identity_layernorms(tmp_path, restricted_tokenizer, stories):
    from transformers import AutoModelForCausalLM

    # GPT-2 arch with zero LayerNorm biases: folding LN creates no unembedding bias, so HF can hold the result.
    model = _randomize(HookedTransformer(preset_config("test-tiny", d_vocab=restricted_tokenizer.vocab_size, arch="gpt2"),
                                         restricted_tokenizer))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".b"):
                p.zero_()
    model.process_weights(fold_ln=True, center_writing_weights=False, center_unembed=False, fold_value_biases=False)
    assert model.cfg.normalization_type == "LNPre"
    out = export_model(model, tmp_path / "hf")
    hf = AutoModelForCausalLM.from_pretrained(out, attn_implementation="eager").eval()
    tokens = _tokens(model.tokenizer, stories)
    with torch.no_grad():
        assert (model(tokens) - hf(tokens).logits).abs().max() < TOL


# ----- export targets are other people's folders until proven otherwise (issue 18, items 4-5) -----------------


def test_export_refuses_a_downloaded_model_folder_and_deletes_nothing(neo_export, tmp_path, capsys):
    run, _ = neo_export
    downloaded = tmp_path / "gpt2"
    downloaded.mkdir()
    files = {"config.json": json.dumps({"model_type": "gpt2", "n_layer": 12}), "pytorch_model.bin": "weights",
             "README.md": "model card"}
    for name, text in files.items():
        (downloaded / name).write_text(text)
    assert main(["export", str(run), "--out", str(downloaded)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "not an earlier Hugging Face export" in err
    assert {p.name: p.read_text() for p in downloaded.iterdir()} == files


def test_export_replaces_only_what_an_earlier_export_wrote(neo_export, tmp_path):
    from tinyinterp.hf.export import MARKER_FILE

    run, _ = neo_export
    out = export_run(run, tmp_path / "hf")
    marker = json.loads((out / MARKER_FILE).read_text())
    assert set(marker["files"]) == {p.name for p in out.iterdir()} - {MARKER_FILE}
    (out / "README.md").write_text("my notes")  # someone added a file next to the export
    with pytest.raises(TinyinterpError, match="holds files an earlier export did not write .*README.md"):
        export_run(run, out)
    assert (out / "README.md").read_text() == "my notes" and (out / "model.safetensors").is_file()
    (out / "README.md").unlink()
    assert export_run(run, out) == out  # a clean earlier export is replaced


def test_export_write_error_is_one_line_and_keeps_the_earlier_export(neo_export, tmp_path, monkeypatch, capsys):
    import errno

    from tinyinterp.runs import rundir as rundir_module

    run, _ = neo_export
    out = export_run(run, tmp_path / "hf")
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(rundir_module, "atomic_save_tensors", disk_full)
    assert main(["export", str(run), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "No space left on device" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_killed_exports_temp_folder_is_removed_by_the_next_export(neo_export, tmp_path):
    import subprocess
    import sys

    run, _ = neo_export
    out = tmp_path / "hf"
    script = (
        "import os, sys\n"
        "import tinyinterp.hf.export as e\n"
        "e._write_tokenizer = lambda *a: os._exit(9)  # dies mid-export, as kill -9 would\n"
        "e.export_run(sys.argv[1], sys.argv[2])\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(run), str(out)], cwd=rundir.__file__.rsplit("/tinyinterp/", 1)[0],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 9, proc.stderr[-2000:]
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # the killed export's leftovers
    export_run(run, out)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert (out / "model.safetensors").is_file()


def test_export_respects_the_umask(neo_export, tmp_path):
    import os
    import stat

    run, _ = neo_export
    old = os.umask(0o022)
    try:
        out = export_run(run, tmp_path / "hf")
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    assert {stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()} == {0o644}


def test_a_processed_model_is_refused_for_the_right_reason(tmp_path, restricted_tokenizer):
    model = _randomize(HookedTransformer(preset_config("test-neo", d_vocab=restricted_tokenizer.vocab_size),
                                         restricted_tokenizer))
    model.process_weights()
    with pytest.raises(NotExpressibleError, match="process_weights") as info:
        export_model(model, tmp_path / "out")
    assert "legacy" not in str(info.value)
    assert not (tmp_path / "out").exists()


def test_process_weights_without_centring_the_unembedding_keeps_a_tied_model_working(restricted_tokenizer, stories):
    model = _randomize(HookedTransformer(preset_config("test-neo", d_vocab=restricted_tokenizer.vocab_size),
                                         restricted_tokenizer))
    tokens = _tokens(restricted_tokenizer, stories)
    with torch.no_grad():
        before = model(tokens).log_softmax(-1)
    model.process_weights(fold_ln=False, center_unembed=False)
    with torch.no_grad():
        after = model(tokens).log_softmax(-1)
    assert (before - after).abs().max() < TOL
    # Centring W_E but not W_U parts them: the model must say it is no longer tied, and be so.
    assert not model.cfg.tie_embeddings and model.unembed.weight is not model.embed.weight
