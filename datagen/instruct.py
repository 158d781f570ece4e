"""TinyStories-Instruct records and the Instruct-OOD split.

For each generated story an LLM writes a 1–2 sentence summary; a random sentence is taken from the
story; the story's words and features come from its record. The training text is a random,
non-empty subset of the lines ``Features:``, ``Words:``, ``Summary:``, ``Random sentence:`` in
random order, then ``Story: <story>`` (the format is defined once, in
:mod:`tinyinterp.data.instruct_format`, which evaluation prompts use too) — e.g.::

    Words: decorate, thunder, ancient
    Features: Dialogue, BadEnding
    Story: Once upon a time, ...

Instruct-OOD (the paper's out-of-distribution test): training records never carry Words and
Summary together; test records always do. The test split is exactly ``round(fraction × n)``
records (half up), chosen by a seeded hash of each id, so it does not depend on the input order.
All randomness is seeded per record.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datagen.runner import Job, RunSummary, done_ids, run_jobs
from datagen.store import load_input_records
from datagen.validation import check_content
from tinyinterp.errors import TinyinterpError
from tinyinterp.data.instruct_format import LINE_KINDS, InstructFields, choose_lines, render_prompt, render_text
from tinyinterp.data.instruct_format import seeded_rng as _rng
from tinyinterp.io.jsonl import write_jsonl
from tinyinterp.llm import InvalidReply, LLMClient

__all__ = ["LINE_KINDS", "choose_lines", "render_instruct", "instruct_record", "make_ood_split", "write_ood_split"]
SUMMARY_PROMPT = ("Summarize the following story in one or two short sentences. Use only very simple words "
                  "that a 3 year old child would likely understand. Reply with the summary only.\n\n"
                  "Story:\n{story}")
_SENTENCE = re.compile(r"[^.!?\n]+[.!?]+[\"”']?")


def split_sentences(story: str) -> list[str]:
    """Sentences of a story (a simple punctuation rule; good enough for children's prose)."""
    return [s.strip() for s in _SENTENCE.findall(story) if len(s.split()) >= 3]


def random_sentence(story: str, rng: random.Random) -> str:
    sentences = split_sentences(story) or [story.strip().split("\n")[0]]
    return rng.choice(sentences)


def record_fields(record: dict) -> InstructFields:
    """The Instruct requirements stored in a record."""
    return InstructFields(features=tuple(record.get("features") or ()), words=tuple(words_list(record)),
                          summary=record.get("summary") or None, random_sentence=record.get("random_sentence") or None)


def available_lines(record: dict) -> list[str]:
    """Line kinds this record can show (no Features line for a story without features)."""
    return record_fields(record).available()


def render_instruct(record: dict, lines: list[str]) -> tuple[str, str]:
    """(prompt, text): the instruction lines then ``Story:``; ``text`` adds one space and the story."""
    fields = record_fields(record)
    return render_prompt(fields, lines), render_text(fields, lines, record["story"])


def words_list(record: dict) -> list[str]:
    w = record.get("words") or {}
    return [w[k] for k in ("verb", "noun", "adjective") if k in w] if isinstance(w, dict) else list(w)


def instruct_record(story: dict, summary: str, seed: int, lines: list[str] | None = None) -> dict:
    """The Instruct record of one story (lines chosen at random unless given)."""
    rng = _rng("instruct", seed, story["id"])
    rec = {
        "id": instruct_id(story["id"], seed), "story_id": story["id"], "story": story["story"],
        "words": story.get("words"), "features": story.get("features") or [],
        "summary": summary, "random_sentence": random_sentence(story["story"], rng),
    }
    rec["lines"] = lines if lines is not None else choose_lines(rng, available_lines(rec))
    rec["prompt"], rec["text"] = render_instruct(rec, rec["lines"])
    return rec


def instruct_id(story_id: str, seed: int) -> str:
    return hashlib.sha256(f"instruct:{seed}:{story_id}".encode()).hexdigest()[:16]


def summary_validator(content: Any) -> str:
    summary = " ".join(str(content).split())
    if len(summary.split()) < 3:
        raise InvalidReply(f"summary too short: {summary!r}")
    return check_content(summary, "summary")


@dataclass
class InstructRunConfig:
    input: Path
    """Stories JSONL written by ``datagen stories`` (needs id, story, words, features)."""
    out: Path
    seed: int = 0
    temperature: float = 0.3
    max_tokens: int = 120
    progress: bool = True

    def __post_init__(self) -> None:
        self.input, self.out = Path(self.input), Path(self.out)
        if self.out.suffix != ".jsonl":
            raise TinyinterpError(f"--out {self.out} must end in .jsonl")
        if self.out.resolve() == self.input.resolve():
            raise TinyinterpError("--out must differ from --input; Instruct records go to a new file")


def generate_instruct(cfg: InstructRunConfig, client: LLMClient) -> RunSummary:
    """Summarise each story with the LLM and write its Instruct record; resumable like stories."""
    stories = load_input_records(cfg.input)
    for s in stories:
        if not s.get("story"):
            raise TinyinterpError(f"--input {cfg.input}: record {s.get('id')} has no 'story'; use a stories JSONL")
    done = done_ids(cfg.out)
    pending = [s for s in stories if instruct_id(s["id"], cfg.seed) not in done]

    def make_job(story: dict) -> Job:
        return Job(id=instruct_id(story["id"], cfg.seed),
                   messages=[{"role": "user", "content": SUMMARY_PROMPT.format(story=story["story"].strip())}],
                   make_record=lambda r, s=story: instruct_record(s, r.value, cfg.seed),
                   validate=summary_validator,
                   chat_kwargs={"temperature": cfg.temperature, "max_tokens": cfg.max_tokens})

    return asyncio.run(run_jobs([make_job(s) for s in pending], client, cfg.out, desc="instruct",
                                progress=cfg.progress, already_done=len(stories) - len(pending)))


def make_ood_split(records: list[dict], seed: int = 0, test_fraction: float = 0.1) -> tuple[list[dict], list[dict]]:
    """Re-render Instruct records: train never has Words+Summary together, test always has both."""
    if not 0 < test_fraction < 1:
        raise TinyinterpError(f"--test-fraction must be in (0, 1), got {test_fraction}")
    for rec in records:
        if not rec.get("summary") or not rec.get("story"):
            raise TinyinterpError(f"record {rec.get('id')} lacks summary/story; pass the JSONL of 'datagen instruct'")
    ids = [rec["id"] for rec in records]
    if len(set(ids)) != len(ids):
        raise TinyinterpError("--input has duplicate record ids; pass the JSONL of 'datagen instruct'")
    n_test = math.floor(test_fraction * len(records) + 0.5)  # exact: round(fraction × n), halves up
    if not 0 < n_test < len(records):
        raise TinyinterpError(f"--test-fraction {test_fraction} of {len(records)} records gives {n_test} test "
                              "records; both splits need at least one (use more records or another fraction)")
    # Rank by a seeded hash of the id: the split depends on (seed, ids) only, not on the input order.
    rank = sorted(ids, key=lambda i: hashlib.sha256(f"ood-split:{seed}:{i}".encode()).digest())
    test_ids = set(rank[:n_test])
    train, test = [], []
    for rec in records:
        rng = _rng("ood", seed, rec["id"])
        is_test = rec["id"] in test_ids
        pair = ("Words", "Summary")
        lines = (choose_lines(rng, available_lines(rec), must=pair) if is_test
                 else choose_lines(rng, available_lines(rec), never_together=pair))
        new = dict(rec, lines=lines, split="test" if is_test else "train", required_words=words_list(rec))
        new["prompt"], new["text"] = render_instruct(new, lines)
        (test if is_test else train).append(new)
    return train, test


def write_ood_split(input_path: Path, out_dir: Path, seed: int = 0, test_fraction: float = 0.1) -> dict:
    """Write ``out_dir/train.jsonl`` and ``out_dir/test.jsonl`` atomically; returns counts."""
    train, test = make_ood_split(load_input_records(Path(input_path)), seed, test_fraction)
    out_dir = Path(out_dir)
    for name, recs in (("train", train), ("test", test)):
        write_jsonl(out_dir / f"{name}.jsonl", recs)
    return {"train": len(train), "test": len(test), "out": str(out_dir)}
