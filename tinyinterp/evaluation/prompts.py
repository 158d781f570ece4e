"""Evaluation prompts: the paper's 44 story beginnings, or any YAML / JSONL list of prompts.

A prompt file is a YAML list or a JSONL file whose items are either plain strings (a story
beginning to complete) or objects. Objects describe either a completion prompt
(``{"text": ..., "id": ...}``) or an Instruct prompt in the paper's TinyStories-Instruct style
(``{"kind": "instruct", "words": [...], "sentence": ..., "summary": ..., "features": [...]}``);
an Instruct prompt without ``text`` gets the Instruct training format built from its fields
(``Words: …\\nSentence: …\\nSummary: …\\nStory: ``, see :func:`instruct_model_text`).

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
                        features: list[str] | None = None) -> str:
    """The TinyStories-Instruct prompt the model sees (one line per given requirement, then ``Story: ``)."""
    lines = []
    if features:
        lines.append("Features: " + ", ".join(features))
    if words:
        lines.append("Words: " + ", ".join(words))
    if sentence:
        lines.append("Sentence: " + sentence)
    if summary:
        lines.append("Summary: " + summary)
    lines.append("Story: ")
    return "\n".join(lines)


def _item_to_prompt(item, position: int, source: Path) -> EvalPrompt:
    default_id = f"p{position:02d}"
    if isinstance(item, str):
        return EvalPrompt(text=item, id=default_id)
    if not isinstance(item, dict):
        raise DataError(f"{source}: item {position} is a {type(item).__name__}; expected a string or a mapping")
    d = dict(item)
    if "prompt" in d and "text" not in d:
        d["text"] = d.pop("prompt")
    d.setdefault("id", default_id)
    d["id"] = str(d["id"])
    for key in ("words", "features"):
        if isinstance(d.get(key), str):  # "a, b, c" is accepted as well as a list
            d[key] = [w.strip() for w in d[key].split(",") if w.strip()]
    if d.get("kind") == "instruct" and not d.get("text"):
        d["text"] = instruct_model_text(d.get("words", []), d.get("sentence"), d.get("summary"), d.get("features"))
    if not isinstance(d.get("text"), str):
        raise DataError(f"{source}: item {position} has no 'text' (or 'prompt') string")
    unknown = set(d) - {"text", "id", "kind", "words", "sentence", "summary", "features"}
    if unknown:
        raise DataError(f"{source}: item {position} has unknown keys {sorted(unknown)}")
    return EvalPrompt(**d)


def load_prompts(path: Path | str | None = None) -> list[EvalPrompt]:
    """Read prompts from a YAML list or JSONL file (default: the paper's evaluation prompts)."""
    if path is None:
        from tinyinterp.paths import eval_prompts_file
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
