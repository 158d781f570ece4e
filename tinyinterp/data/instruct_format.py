"""The TinyStories-Instruct text format: ONE definition for datagen, training text and evaluation.

A story's requirements are written as instruction lines ``<Kind>: <value>`` — kinds ``Features``,
``Words``, ``Summary``, ``Random sentence``; any non-empty subset, in any order — then ``Story:``,
one space, and the story::

    Words: throw, ball, red
    Random sentence: He threw it up high!
    Story: Tom had a red ball. ...

``render_text`` writes the training text (datagen stores it as a record's ``text``; the trainer
reads that field), ``render_prompt`` the text a model is asked to continue at evaluation, and
``parse_text`` reads either back (the round-trip test checks ``parse(render(x)) == x``).

The prompt ends with ``Story:`` and *no* trailing space: BPE tokenizers attach the space to the
story's first word (`` Once``), so a prompt ending in a space would start the model at a token
boundary it never saw in training. Line order is part of the format: training draws a random order
per record (:func:`choose_lines`), and evaluation prompts built from fields draw theirs with the
same function, seeded by the prompt id, so they come from the same distribution.

    >>> fields = InstructFields(words=("dog", "happy"), summary="A dog is happy.")
    >>> render_prompt(fields, ["Words", "Summary"])
    'Words: dog, happy\\nSummary: A dog is happy.\\nStory:'
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any, Sequence

from tinyinterp.errors import DataError

LINE_KINDS = ("Features", "Words", "Summary", "Random sentence")
STORY_LABEL = "Story:"
STORY_SEPARATOR = " "
"""Between ``Story:`` and the story in the training text (the model generates it as part of ``" Once"``)."""
LIST_SEPARATOR = ", "


@dataclass(frozen=True)
class InstructFields:
    """The requirements of one Instruct story (empty / None = not given)."""

    features: tuple[str, ...] = ()
    words: tuple[str, ...] = ()
    summary: str | None = None
    random_sentence: str | None = None
    """A sentence the story must contain (the paper's "Random sentence"; "sentence" in eval prompt files)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", tuple(self.features or ()))
        object.__setattr__(self, "words", tuple(self.words or ()))
        for item in (*self.features, *self.words):
            if not str(item).strip() or "\n" in item or "," in item:
                raise DataError(f"Instruct word/feature {item!r} must be non-empty, one line, without commas")
        for name in ("summary", "random_sentence"):
            value = getattr(self, name)
            if value is not None and ("\n" in value or not value.strip()):
                raise DataError(f"Instruct {name} {value!r} must be non-empty and on one line")

    def value(self, kind: str) -> str | None:
        """The text after ``<kind>: `` (None when this requirement is not given)."""
        if kind == "Features":
            return LIST_SEPARATOR.join(self.features) or None
        if kind == "Words":
            return LIST_SEPARATOR.join(self.words) or None
        if kind == "Summary":
            return self.summary
        if kind == "Random sentence":
            return self.random_sentence
        raise DataError(f"unknown Instruct line kind {kind!r}; expected one of {LINE_KINDS}")

    def available(self) -> list[str]:
        """Line kinds this record can show, in canonical order."""
        return [k for k in LINE_KINDS if self.value(k) is not None]


def render_prompt(fields: InstructFields, lines: Sequence[str]) -> str:
    """The instruction lines in the given order, then ``Story:`` (what the model continues)."""
    if len(set(lines)) != len(lines):
        raise DataError(f"Instruct lines {list(lines)} repeat a kind")
    out = []
    for kind in lines:
        value = fields.value(kind)
        if value is None:
            raise DataError(f"Instruct line {kind!r} has no value in this record")
        out.append(f"{kind}: {value}\n")
    return "".join(out) + STORY_LABEL


def render_text(fields: InstructFields, lines: Sequence[str], story: str) -> str:
    """The training text: the prompt, one space, the story (stripped)."""
    story = story.strip()
    if not story:
        raise DataError("an Instruct training text needs a non-empty story")
    return render_prompt(fields, lines) + STORY_SEPARATOR + story


@dataclass(frozen=True)
class ParsedInstruct:
    fields: InstructFields
    lines: tuple[str, ...]
    story: str | None
    """None when the text was a prompt (ends at ``Story:``)."""


def parse_text(text: str) -> ParsedInstruct:
    """Read a prompt or training text back into its fields, line order and story."""
    values: dict[str, str] = {}
    order: list[str] = []
    rest = text
    while not rest.startswith(STORY_LABEL):
        line, newline, rest = rest.partition("\n")
        kind, sep, value = line.partition(": ")
        if not newline or not sep or kind not in LINE_KINDS or kind in values:
            raise DataError(f"not an Instruct text: line {line[:60]!r} is not a new '<Kind>: value' line "
                            f"(kinds {', '.join(LINE_KINDS)}) before {STORY_LABEL!r}")
        values[kind] = value
        order.append(kind)
    after = rest[len(STORY_LABEL):]
    if after and not after.startswith(STORY_SEPARATOR):
        raise DataError(f"not an Instruct text: {STORY_LABEL!r} must be followed by one space and the story")
    split = lambda v: tuple(v.split(LIST_SEPARATOR)) if v is not None else ()  # noqa: E731
    fields = InstructFields(features=split(values.get("Features")), words=split(values.get("Words")),
                            summary=values.get("Summary"), random_sentence=values.get("Random sentence"))
    return ParsedInstruct(fields, tuple(order), after[len(STORY_SEPARATOR):] if after else None)


def seeded_rng(*key: Any) -> random.Random:
    """A Random seeded by a stable hash of ``key`` (the same on every machine and Python run)."""
    digest = hashlib.sha256(":".join(map(str, key)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


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


def prompt_order(fields: InstructFields, *key: Any) -> list[str]:
    """Every given requirement, in a random order drawn from ``key`` (evaluation: all lines are shown)."""
    lines = fields.available()
    seeded_rng("instruct-order", *key).shuffle(lines)
    return lines
