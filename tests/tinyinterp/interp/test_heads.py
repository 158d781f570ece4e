"""Head metrics on constructed heads: patterns overwritten through ``hook_pattern`` so the real
analysis path (hooks, accumulation, fit, classification) sees a head with a known answer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformer_lens import head_detector as hd

from tinyinterp.interp.categories import CAT, TokenCategorizer
from tinyinterp.interp.head_decomposition import group_index
from tinyinterp.interp.heads import HeadConfig, HeadResult, _HeadAccumulator, analyze_heads, sample_windows

LAYER, HEAD = 0, 1


def _override(model, make_pattern):
    """Permanently replace head (LAYER, HEAD)'s pattern with ``make_pattern(tokens, T)`` (T, T) per row."""
    seen = {}
    model.embed.register_forward_pre_hook(lambda mod, args: seen.__setitem__("tokens", args[0]))

    def hook(pattern, hook):
        pattern = pattern.clone()
        for b, row in enumerate(seen["tokens"]):
            pattern[b, HEAD] = make_pattern(row, pattern.shape[-1])
        return pattern

    model.add_hook(f"blocks.{LAYER}.attn.hook_pattern", hook, is_permanent=True)


def prev_token_pattern(tokens, T):
    p = torch.zeros(T, T)
    p[0, 0] = 1
    p[torch.arange(1, T), torch.arange(0, T - 1)] = 1
    return p


def test_previous_token_head_is_local(story_model, story_corpus):
    _override(story_model, prev_token_pattern)
    result = analyze_heads(story_model, story_corpus, HeadConfig(n_samples=12, seq_len=32), progress=False)
    m = {k: v[LAYER, HEAD] for k, v in result.metrics.items()}
    T = result.seq_len
    assert m["prev_token"] == pytest.approx((T - 1) / T)  # every query but q=0 on its previous token
    assert m["mean_distance"] == pytest.approx((T - 1) / T)
    assert m["local_1"] == pytest.approx(1.0) and m["entropy"] == pytest.approx(0.0, abs=1e-6)
    assert m["distance_r2"] > 0.95
    assert result.head_class[LAYER, HEAD] == "local"
    assert (LAYER, HEAD) in result.by_class()["local"]


def test_name_seeking_head_is_semantic(story_model, story_tokenizer, tmp_path):
    """A head that always attends to the latest name token, wherever it is, classifies semantic."""
    from tinyinterp.data.corpus import tokenize_corpus

    rng = np.random.default_rng(0)
    fillers = ["the big dog ran to the park", "a red ball was in the box", "it was a happy day",
               "they played with the soft toy", "the cat saw a little tree"]
    docs = []
    for _ in range(16):
        parts = [fillers[i] for i in rng.integers(0, len(fillers), 8)]
        for pos in rng.choice(8, size=2, replace=False):
            parts[pos] = f"{rng.choice(['Lucy', 'Tom', 'Ben'])} " + parts[pos]
        docs.append(". ".join(parts) + ".")
    corpus = tokenize_corpus(docs, story_tokenizer, tmp_path / "c", progress=False)
    cat = TokenCategorizer(story_tokenizer)

    def latest_name(tokens, T):
        names = cat.label_stream(tokens.numpy()) == CAT["name"]
        p = torch.zeros(T, T)
        last = 0
        for q in range(T):
            last = q if names[q] else last
            p[q, last] = 1
        return p

    _override(story_model, latest_name)
    result = analyze_heads(story_model, corpus, HeadConfig(n_samples=16, seq_len=48), progress=False)
    m = {k: v[LAYER, HEAD] for k, v in result.metrics.items()}
    assert m["name_ratio"] > 3
    assert m["local_4"] < 0.5 and m["distance_r2"] < 0.5
    assert result.head_class[LAYER, HEAD] == "semantic"
    # an untouched random head neither seeks names nor is purely local
    assert result.head_class[LAYER, 0] != "semantic"


def test_detector_scores_match_transformer_lens():
    torch.manual_seed(0)
    T, H = 10, 3
    tokens = torch.tensor([[5, 6, 7, 5, 6, 7, 8, 5, 6, 9]])
    p = torch.rand(1, H, T, T).tril()
    p = p / p.sum(-1, keepdim=True)
    acc = _HeadAccumulator(H, T)
    labels = torch.full((1, T), -1)
    acc.update(p, tokens, labels, group_index(tokens, labels))
    metrics, _ = acc.finish()
    for ours, pattern_fn in (("prev_token", hd.get_previous_token_head_detection_pattern),
                             ("duplicate_token", hd.get_duplicate_token_head_detection_pattern),
                             ("induction", hd.get_induction_head_detection_pattern)):
        det = pattern_fn(tokens)
        for h in range(H):
            tl = hd.compute_head_attention_similarity_score(p[0, h], det, exclude_bos=False,
                                                            exclude_current_token=False, error_measure="mul")
            assert metrics[ours][h] == pytest.approx(tl, abs=1e-6), ours


def test_uniform_head_metrics_known_answers():
    T = 8
    p = (torch.ones(T, T).tril() / torch.arange(1, T + 1)[:, None])[None, None]
    acc = _HeadAccumulator(1, T)
    tokens, labels = torch.arange(T)[None], torch.full((1, T), -1)
    acc.update(p, tokens, labels, group_index(tokens, labels))
    m, kernel = acc.finish()
    expected_entropy = np.mean([np.log(q + 1) for q in range(T)])
    assert m["entropy"][0] == pytest.approx(expected_entropy)
    assert m["mean_distance"][0] == pytest.approx(np.mean([q / 2 for q in range(T)]))
    assert m["local_1"][0] == pytest.approx(np.mean([min(2, q + 1) / (q + 1) for q in range(T)]))
    assert np.isnan(m["distance_r2"][0])  # uniform is the baseline itself: nothing to explain


def test_save_load_roundtrip(story_model, story_corpus, tmp_path):
    result = analyze_heads(story_model, story_corpus, HeadConfig(n_samples=4, seq_len=16), progress=False)
    result.save(tmp_path)
    again = HeadResult.load(tmp_path)
    assert (again.head_class == result.head_class).all()
    np.testing.assert_allclose(again.metrics["entropy"], result.metrics["entropy"], atol=1e-5)
    assert set(again.to_frame().columns) >= {"layer", "head", "head_class", "induction"}


def test_sample_windows_needs_tokens(story_corpus):
    lengths = np.diff(story_corpus.doc_offsets)
    starts, T = sample_windows(story_corpus, 5, 10_000)  # capped at the longest document
    assert T == int(lengths.max())
    assert len(starts) == min(5, int((lengths >= T).sum()))
    docs = np.searchsorted(story_corpus.doc_offsets, starts, side="right") - 1
    assert (lengths[docs] >= T).all()


def test_load_results_saved_before_the_decomposition(story_model, story_corpus, tmp_path):
    """heads.json written by the old rule (no decomposition metrics, old threshold names) still loads."""
    import json

    result = analyze_heads(story_model, story_corpus, HeadConfig(n_samples=4, seq_len=16), progress=False)
    path = result.save(tmp_path)
    old = json.loads(path.read_text())
    for m in ("structure", "distance_explained", "content_explained", "joint_explained", "margin"):
        del old["metrics"][m]
    old["thresholds"] = {"local_share": 0.6, "local_r2": 0.5, "semantic_ratio": 2.0}
    del old["content_logits"]
    path.write_text(json.dumps(old))
    again = HeadResult.load(tmp_path)
    frame = again.to_frame()
    assert frame["distance_explained"].isna().all() and (frame["content_category"] == "").all()
    assert (again.head_class == result.head_class).all() and again.counts() == result.counts()
