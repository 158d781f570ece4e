"""End to end: `tinyinterp analyze neurons|heads|compare` on a saved run, the summary, and compare()
against a random-init GPT-2 saved locally with transformers (loaded through tinyinterp.load)."""

from __future__ import annotations

import pytest

from tests.support.story_world import make_model, make_stories
from tinyinterp.runs import rundir
from tinyinterp.interp.cli import main
from tinyinterp.interp.compare import ComparisonResult, compare
from tinyinterp.interp.heads import HeadConfig
from tinyinterp.interp.neuron_index import NeuronIndexConfig
from tinyinterp.interp.summary import summarize


def tinyinterp_error():
    from tinyinterp.errors import TinyinterpError

    return TinyinterpError


@pytest.fixture
def run_dir(story_tokenizer, tmp_path):
    return rundir.save_run(tmp_path / "run", make_model(story_tokenizer), story_tokenizer)


def test_cli_neurons_heads_and_summary(run_dir, story_corpus, capsys):
    assert main(["neurons", str(run_dir), "--corpus", str(story_corpus.path), "--k", "5", "--no-progress"]) == 0
    assert main(["heads", str(run_dir), "--corpus", str(story_corpus.path), "--n-samples", "8", "--seq-len", "32", "--no-progress"]) == 0
    analysis = run_dir / rundir.ANALYSIS_DIR
    assert (analysis / "neurons" / "index.safetensors").is_file() and (analysis / "neurons" / "purity.json").is_file()
    assert (analysis / "heads" / "heads.json").is_file()
    text = summarize(run_dir)
    assert "mean purity" in text and "Most pure role neurons" in text and "Heads (8," in text
    assert "local" in text and "mixed" in text


def test_cli_errors_are_one_line(run_dir, story_corpus, capsys, tmp_path):
    assert main(["neurons", str(tmp_path / "nope"), "--corpus", str(story_corpus.path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    with pytest.raises(tinyinterp_error(), match="no analysis folder"):
        summarize(tmp_path)
    (tmp_path / rundir.ANALYSIS_DIR).mkdir()
    assert summarize(tmp_path).count("not analysed yet") == 2


def test_compare_two_of_our_models(story_tokenizer, story_corpus, tmp_path):
    a, b = make_model(story_tokenizer, seed=0), make_model(story_tokenizer, seed=1, preset="test-small")
    result = compare(a, b, story_corpus, work_dir=tmp_path, index_config=NeuronIndexConfig(k=5, seq_len=32),
                     head_config=HeadConfig(n_samples=6, seq_len=32), progress=False)
    assert result.a.n_heads == 4 and result.b.d_mlp == 256
    assert sum(result.a.head_counts.values()) == 8 and sum(result.b.head_counts.values()) == 8
    result.save(tmp_path / "cmp")
    again = ComparisonResult.load(tmp_path / "cmp")
    assert again.format() == result.format() and "role neurons" in again.format()
    assert len(again.to_frame()) == 4  # 2 layers x 2 models


def test_compare_with_local_random_gpt2(story_tokenizer, tmp_path):
    """A random-init GPT-2 (its own 400-token tokenizer) saved with transformers, via tinyinterp.load."""
    transformers = pytest.importorskip("transformers")
    import tinyinterp

    gpt2_dir = tmp_path / "gpt2-tiny"
    cfg = transformers.GPT2Config(vocab_size=story_tokenizer.vocab_size, n_positions=64, n_embd=32, n_layer=2, n_head=4)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(gpt2_dir)
    story_tokenizer.save(gpt2_dir / "tokenizer.json")
    try:
        gpt2 = tinyinterp.load(gpt2_dir)
    except tinyinterp.errors.TinyinterpError as e:  # the loader may need more files; say which
        pytest.fail(f"loader refused a local GPT-2 folder: {e}")
    ours = make_model(story_tokenizer)
    result = compare(ours, gpt2, make_stories(30), work_dir=tmp_path / "work",
                     index_config=NeuronIndexConfig(k=5, seq_len=32), head_config=HeadConfig(n_samples=6, seq_len=32),
                     progress=False)
    assert result.b.n_layers == 2 and result.b.d_mlp == 128
    assert sum(result.b.head_counts.values()) == 8


def test_cli_defaults_to_the_runs_training_corpus_and_retokenizes_for_gpt2(run_dir, story_corpus, shared_data, tmp_path, capsys):
    """No --corpus: the run's own data/train is used; a GPT-2 with another tokenizer gets the same texts."""
    import shutil

    from tests.support.hf_models import save_tiny_hf_model
    from tinyinterp.data.corpus import TokenizedCorpus
    from tinyinterp.data.tokenizer import Tokenizer

    with pytest.raises(tinyinterp_error(), match="no training corpus"):
        from tinyinterp.interp.cli import _default_corpus

        _default_corpus(str(run_dir))
    shutil.copytree(story_corpus.path, run_dir / "data" / "train")
    gpt2_dir = save_tiny_hf_model(tmp_path / "gpt2", "gpt2", shared_data / "tokenizers" / "gpt2" / "tokenizer.json")
    out = tmp_path / "cmp"
    assert main(["compare", str(run_dir), str(gpt2_dir), "--out", str(out), "--max-docs", "20",
                 "--n-samples", "4", "--no-progress"]) == 0
    assert ComparisonResult.load(out).b.n_layers == 2
    gpt2_tok = Tokenizer.from_hf(gpt2_dir)
    retok = TokenizedCorpus.open(out / f"corpus_{gpt2_tok.fingerprint()[:12]}")
    assert retok.n_docs == 20
    original = TokenizedCorpus.open(run_dir / "data" / "train")
    from tinyinterp.runs.rundir import load_run

    ours = load_run(run_dir).tokenizer
    assert gpt2_tok.decode(retok.document(3).tolist()) == ours.decode(original.document(3).tolist())
