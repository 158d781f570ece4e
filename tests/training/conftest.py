"""Fixtures for trainer tests: a synthetic story corpus and a small fresh BPE (no shared data, no network)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

NAMES = ["Lily", "Tom", "Ben", "Sue", "Max", "Mia", "Sam", "Anna"]
THINGS = ["ball", "cat", "dog", "tree", "cake", "boat", "kite", "bird", "box"]
VERBS = ["saw", "found", "liked", "lost", "made", "wanted", "hugged"]


def _story(rng: random.Random) -> str:
    first = f"Once upon a time, {rng.choice(NAMES)} {rng.choice(VERBS)} a {rng.choice(THINGS)}."
    rest = " ".join(f"{rng.choice(NAMES)} {rng.choice(VERBS)} the {rng.choice(THINGS)}." for _ in range(rng.randint(2, 8)))
    return f"{first} {rest} They were happy."


@pytest.fixture(scope="session")
def story_files(tmp_path_factory) -> dict[str, Path]:
    """train.txt / val.txt (<|endoftext|>-separated) and tokenizer.json (fresh 300-token BPE)."""
    from tinyinterp.data.tokenizer import Tokenizer

    root = tmp_path_factory.mktemp("stories")
    rng = random.Random(0)
    stories = [_story(rng) for _ in range(300)]
    for name, part in (("train.txt", stories[:270]), ("val.txt", stories[270:])):
        (root / name).write_text("".join(f"{s}\n<|endoftext|>\n" for s in part), encoding="utf-8")
    Tokenizer.train_bpe(stories, vocab_size=300, progress=False).save(root / "tokenizer.json")
    return {"train": root / "train.txt", "val": root / "val.txt", "tokenizer": root / "tokenizer.json"}


@pytest.fixture
def train_args(story_files):
    """CLI arguments of a tiny, fast run; extend with --out, --max-steps and friends."""
    return [
        "--data", str(story_files["train"]), "--val-data", str(story_files["val"]),
        "--tokenizer", str(story_files["tokenizer"]), "--preset", "test-tiny",
        "--batch-size", "8", "--seq-len", "32", "--warmup-steps", "2", "--lr", "3e-3",
        "--eval-batches", "2", "--no-progress",
    ]
