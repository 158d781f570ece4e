"""Evaluation prompts: the paper's 44 story beginnings, or any YAML / JSONL list of prompts.

A prompt file is a YAML list or a JSONL file whose items are either plain strings (a story
beginning to complete) or objects. Objects describe either a completion prompt
(``{"text": ..., "id": ...}``) or an Instruct prompt in the paper's TinyStories-Instruct style
(``{"kind": "instruct", "words": [...], "sentence": ..., "summary": ..., "features": [...]}``);
an Instruct prompt without ``text`` gets the Instruct training format built from its fields by
:mod:`tinyinterp.data.instruct_format` — the same definition datagen writes training text with
(``Words: …\\nRandom sentence: …\\nSummary: …\\nStory:``, lines in an order seeded by the prompt id,
or the order given as ``lines``). Records written by ``tinyinterp datagen instruct|ood`` (e.g. the
OOD ``test.jsonl``) load as Instruct prompts directly, with the record's own line order.

    >>> prompts = load_prompts()          # ../shared/data/eval-prompts/Evaluation prompts.yaml
    >>> len(prompts), prompts[0].kind
    (44, 'completion')
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from tinyinterp.errors import DataError
from tinyinterp.data.instruct_format import InstructFields, prompt_order, render_prompt

KINDS = ("completion", "instruct")


@dataclass
class EvalPrompt:
    """One evaluation prompt; ``text`` is exactly what the model is asked to continue."""

    text: str
    id: str = ""
    """Stable id (``p00``… for list position when absent in the file)."""
    kind: str = "completion"
    """``completion`` (continue a cut story) or ``instruct`` (write a story meeting requirements)."""
    words: list[str] = field(default_factory=list)
    """Instruct: words the story must contain."""
    sentence: str | None = None
    """Instruct: a sentence the story must contain."""
    summary: str | None = None
    """Instruct: the general plot."""
    features: list[str] = field(default_factory=list)
    """Instruct: story features (Dialogue, BadEnding, …)."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise DataError(f"prompt {self.id or self.text[:30]!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if not self.text.strip():
            raise DataError(f"prompt {self.id!r}: empty text")

    @property
    def text_hash(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()[:16]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> EvalPrompt:
        return cls(**{k: d[k] for k in ("text", "id", "kind", "words", "sentence", "summary", "features") if k in d})


def instruct_model_text(words: list[str], sentence: str | None = None, summary: str | None = None,
                        features: list[str] | None = None, order_key: str = "", lines: list[str] | None = None) -> str:
    """The TinyStories-Instruct prompt the model sees: exactly datagen's format, up to ``Story:``.

    Every given requirement is shown, in ``lines`` order or else an order seeded by ``order_key``
    (training shows random orders, so a fixed one would be one arbitrary slice of them).
    """
    fields = InstructFields(features=tuple(features or ()), words=tuple(words or ()), summary=summary or None,
                            random_sentence=sentence or None)
    if not fields.available():
        raise DataError("an Instruct prompt needs at least one of words, sentence, summary, features")
    return render_prompt(fields, lines if lines is not None else prompt_order(fields, order_key))


def _from_datagen_record(d: dict) -> dict:
    """An item of ``datagen instruct|ood`` output → an Instruct prompt item (its own line order)."""
    words = d.get("words") or {}
    words = [words[k] for k in ("verb", "noun", "adjective") if k in words] if isinstance(words, dict) else words
    shown = set(d["lines"])
    return {"id": d["id"], "kind": "instruct", "lines": list(d["lines"]),
            "words": list(words) if "Words" in shown else [],
            "sentence": d.get("random_sentence") if "Random sentence" in shown else None,
            "summary": d.get("summary") if "Summary" in shown else None,
            "features": list(d.get("features") or []) if "Features" in shown else []}


def _item_to_prompt(item, position: int, source: Path) -> EvalPrompt:
    default_id = f"p{position:02d}"
    if isinstance(item, str):
        return EvalPrompt(text=item, id=default_id)
    if not isinstance(item, dict):
        raise DataError(f"{source}: item {position} is a {type(item).__name__}; expected a string or a mapping")
    d = dict(item)
    if "story_id" in d and "lines" in d:  # a datagen Instruct record: the prompt is rebuilt from its fields
        d = _from_datagen_record(d)
    if "prompt" in d and "text" not in d:
        d["text"] = d.pop("prompt")
    d.setdefault("id", default_id)
    d["id"] = str(d["id"])
    for key in ("words", "features"):
        if isinstance(d.get(key), str):  # "a, b, c" is accepted as well as a list
            d[key] = [w.strip() for w in d[key].split(",") if w.strip()]
    lines = d.pop("lines", None)
    if d.get("kind") == "instruct" and not d.get("text"):
        try:
            d["text"] = instruct_model_text(d.get("words", []), d.get("sentence"), d.get("summary"), d.get("features"),
                                            order_key=d["id"], lines=lines)
        except DataError as e:
            raise DataError(f"{source}: item {position}: {e}") from None
    if not isinstance(d.get("text"), str):
        raise DataError(f"{source}: item {position} has no 'text' (or 'prompt') string")
    unknown = set(d) - {"text", "id", "kind", "words", "sentence", "summary", "features"}
    if unknown:
        raise DataError(f"{source}: item {position} has unknown keys {sorted(unknown)}")
    return EvalPrompt(**d)


def load_prompts(path: Path | str | None = None) -> list[EvalPrompt]:
    """Read prompts from a YAML list or JSONL file (default: the paper's evaluation prompts)."""
    if path is None:
        from tinyinterp.data.paths import eval_prompts_file
        path = eval_prompts_file()
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: prompt file not found; pass a YAML list or JSONL file of prompts")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        items = []
        for i, line in enumerate(text.splitlines()):
            if line.strip():
                try:
                    items.append(json.loads(line))
                except json.JSONDecodeError:
                    raise DataError(f"{path}:{i + 1}: not valid JSON") from None
    else:
        try:
            items = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise DataError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(items, list) or not items:
        raise DataError(f"{path}: expected a non-empty list of prompts")
    prompts = [_item_to_prompt(item, i, path) for i, item in enumerate(items)]
    ids = [p.id for p in prompts]
    if len(set(ids)) != len(ids):
        raise DataError(f"{path}: duplicate prompt ids; give every prompt a unique 'id'")
    return prompts
