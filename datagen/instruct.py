"""TinyStories-Instruct records and the Instruct-OOD split.

For each generated story an LLM writes a 1–2 sentence summary; a random sentence is taken from the
story; the story's words and features come from its record. The training text is a random,
non-empty subset of the lines ``Features:``, ``Words:``, ``Summary:``, ``Random sentence:`` in
random order, then ``Story: <story>`` — e.g.::

    Words: decorate, thunder, ancient
    Features: Dialogue, BadEnding
    Story: Once upon a time, ...

Instruct-OOD (the paper's out-of-distribution test): training records never carry Words and
Summary together; test records always do. All randomness is seeded per record.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datagen.runner import Job, RunSummary, done_ids, run_jobs
from datagen.store import atomic_write_text, load_input_records
from tinyinterp.errors import TinyinterpError
from tinyinterp.llm import InvalidReply, LLMClient

LINE_KINDS = ("Features", "Words", "Summary", "Random sentence")
SUMMARY_PROMPT = ("Summarize the following story in one or two short sentences. Use only very simple words "
                  "that a 3 year old child would likely understand. Reply with the summary only.\n\n"
                  "Story:\n{story}")
_SENTENCE = re.compile(r"[^.!?\n]+[.!?]+[\"”']?")


def _rng(*parts: Any) -> random.Random:
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def split_sentences(story: str) -> list[str]:
    """Sentences of a story (a simple punctuation rule; good enough for children's prose)."""
    return [s.strip() for s in _SENTENCE.findall(story) if len(s.split()) >= 3]


def random_sentence(story: str, rng: random.Random) -> str:
    sentences = split_sentences(story) or [story.strip().split("\n")[0]]
    return rng.choice(sentences)


def available_lines(record: dict) -> list[str]:
    """Line kinds this record can show (no Features line for a story without features)."""
    return [k for k in LINE_KINDS if k != "Features" or record.get("features")]


def render_instruct(record: dict, lines: list[str]) -> tuple[str, str]:
    """(prompt, text): the instruction lines then ``Story:``; ``text`` adds the story."""
    values = {
        "Features": ", ".join(record.get("features") or []),
        "Words": ", ".join(words_list(record)),
        "Summary": record.get("summary", ""),
        "Random sentence": record.get("random_sentence", ""),
    }
    prompt = "".join(f"{kind}: {values[kind]}\n" for kind in lines) + "Story:"
    return prompt, f"{prompt} {record['story'].strip()}"


def words_list(record: dict) -> list[str]:
    w = record.get("words") or {}
    return [w[k] for k in ("verb", "noun", "adjective") if k in w] if isinstance(w, dict) else list(w)


def choose_lines(rng: random.Random, available: list[str], must: tuple[str, ...] = (),
                 never_together: tuple[str, ...] = ()) -> list[str]:
    """A random non-empty subset in random order, containing ``must``, never all of ``never_together``."""
    optional = [k for k in available if k not in must]
    k = rng.randint(0 if must else 1, len(optional))
    chosen = list(must) + rng.sample(optional, k)
    if never_together and all(k in chosen for k in never_together):
        chosen.remove(rng.choice(list(never_together)))
    rng.shuffle(chosen)
    return chosen


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
    return summary


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
    train, test = [], []
    for rec in records:
        if not rec.get("summary") or not rec.get("story"):
            raise TinyinterpError(f"record {rec.get('id')} lacks summary/story; pass the JSONL of 'datagen instruct'")
        rng = _rng("ood", seed, rec["id"])
        is_test = rng.random() < test_fraction
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
        atomic_write_text(out_dir / f"{name}.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs))
    return {"train": len(train), "test": len(test), "out": str(out_dir)}
