"""The project's POS-labelled child vocabulary: ~1,700 words a 3–4-year-old knows.

One data file, ``tinyinterp/resources/lexicon.tsv`` (columns ``word``, ``pos`` with pos in
``noun|verb|adjective``), shared by the story generator (``datagen`` samples one verb, noun and
adjective per prompt) and by the interpretability code (noun/verb/adjective token categories).
Each word has ONE primary part of speech (the sense a children's story most often uses).

Example::

    from tinyinterp.data.lexicon import load_lexicon
    lex = load_lexicon()
    lex.words("verb")[:3]        # ['accept', 'act', 'add']
    lex.pos_of("Puppies")        # 'noun'   (plural of 'puppy')
    lex.pos_of("jumped")         # 'verb'
    lex.pos_of("bigger")         # 'adjective'
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from tinyinterp.errors import DataError

POS_TAGS = ("noun", "verb", "adjective")
LEXICON_FILE = Path(__file__).resolve().parent.parent / "resources" / "lexicon.tsv"

# Irregular forms a child's story uses all the time; suffix rules cannot recover them.
_IRREGULAR = {
    "ran": "run", "went": "go", "gone": "go", "ate": "eat", "eaten": "eat", "took": "take", "taken": "take",
    "came": "come", "made": "make", "said": "say", "found": "find", "gave": "give", "given": "give",
    "got": "get", "knew": "know", "known": "know", "felt": "feel", "fell": "fall", "fallen": "fall",
    "flew": "fly", "grew": "grow", "grown": "grow", "held": "hold", "kept": "keep", "lost": "lose",
    "met": "meet", "sang": "sing", "sung": "sing", "sat": "sit", "slept": "sleep", "stood": "stand",
    "swam": "swim", "thought": "think", "threw": "throw", "thrown": "throw", "told": "tell", "wore": "wear",
    "won": "win", "wrote": "write", "written": "write", "bought": "buy", "brought": "bring", "built": "build",
    "caught": "catch", "drew": "draw", "drawn": "draw", "drank": "drink", "drove": "drive", "hid": "hide",
    "hidden": "hide", "began": "begin", "broke": "break", "chose": "choose", "dug": "dig", "fed": "feed",
    "fought": "fight", "forgot": "forget", "heard": "hear", "rode": "ride", "rang": "ring", "rose": "rise",
    "sold": "sell", "sent": "send", "shook": "shake", "shone": "shine", "spent": "spend", "spun": "spin",
    "stole": "steal", "stuck": "stick", "swept": "sweep", "swung": "swing", "taught": "teach", "tore": "tear",
    "understood": "understand", "woke": "wake", "wept": "weep", "blew": "blow", "bit": "bite",
    "children": "child", "mice": "mouse", "feet": "foot", "teeth": "tooth", "men": "man", "women": "woman",
    "geese": "goose", "leaves": "leaf", "wolves": "wolf", "knives": "knife", "shelves": "shelf",
    "better": "good", "best": "good", "worse": "bad", "worst": "bad",
}
_VOWELS = set("aeiou")


@dataclass
class Lexicon:
    """Word → part of speech, plus the inverse lists. Lookups are case-insensitive."""

    pos_by_word: dict[str, str]
    _by_pos: dict[str, list[str]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for pos in POS_TAGS:
            self._by_pos[pos] = sorted(w for w, p in self.pos_by_word.items() if p == pos)

    def __len__(self) -> int:
        return len(self.pos_by_word)

    def __contains__(self, word: str) -> bool:
        return word.lower() in self.pos_by_word

    def words(self, pos: str) -> list[str]:
        """All lexicon words of one part of speech, sorted (a copy; safe to shuffle)."""
        if pos not in POS_TAGS:
            raise ValueError(f"pos must be one of {POS_TAGS}, got {pos!r}")
        return list(self._by_pos[pos])

    def lemma_of(self, word: str) -> str | None:
        """The lexicon word ``word`` is a form of, or None when unknown or ambiguous."""
        w = word.strip().lower()
        if w in self.pos_by_word:
            return w
        if w in _IRREGULAR and _IRREGULAR[w] in self.pos_by_word:
            return _IRREGULAR[w]
        hits = self._suffix_hits(w)
        # Ambiguity only matters when the candidates disagree on the part of speech
        # ('hoping' → hop/hope: both verbs, fine; keep the longest for a stable answer).
        if len({self.pos_by_word[c] for c in hits}) != 1:
            return None
        return max(sorted(hits), key=len)

    def _suffix_hits(self, w: str) -> set[str]:
        """Lexicon words that a suffix rule maps ``w`` to, with a part of speech that suffix allows."""
        return {lemma for lemma, allowed in _candidates_with_pos(w) if self.pos_by_word.get(lemma) in allowed}

    def pos_of(self, word: str) -> str | None:
        """Part of speech of ``word`` or one of its simple inflections; None if unknown/ambiguous."""
        w = word.strip().lower()
        if w in self.pos_by_word:
            return self.pos_by_word[w]
        if w in _IRREGULAR:
            return self.pos_by_word.get(_IRREGULAR[w])
        poses = {self.pos_by_word[c] for c in self._suffix_hits(w)}
        return poses.pop() if len(poses) == 1 else None

    def overlap_with(self, words: Iterable[str]) -> dict:
        """Coverage of another word list by this lexicon (exact, and counting inflected forms)."""
        given = sorted({w.strip().lower() for w in words if w.strip()})
        exact = [w for w in given if w in self.pos_by_word]
        inflected = [w for w in given if w not in self.pos_by_word and self.pos_of(w) is not None]
        missing = [w for w in given if w not in self.pos_by_word and self.pos_of(w) is None]
        n = max(len(given), 1)
        by_pos = {pos: sum(1 for w in exact if self.pos_by_word[w] == pos) for pos in POS_TAGS}
        return {
            "n_given": len(given),
            "n_lexicon": len(self),
            "n_exact": len(exact),
            "n_inflected": len(inflected),
            "coverage_exact": len(exact) / n,
            "coverage": (len(exact) + len(inflected)) / n,
            "covered_by_pos": by_pos,
            "missing": missing,
        }


def _candidates_with_pos(w: str) -> list[tuple[str, tuple[str, ...]]]:
    """(lemma, parts of speech the suffix allows) for every suffix rule that matches ``w``."""
    out: list[tuple[str, tuple[str, ...]]] = []
    nv, v, a = ("noun", "verb"), ("verb",), ("adjective",)
    if w.endswith("ies") and len(w) > 4:
        out.append((w[:-3] + "y", nv))
    if w.endswith("es") and len(w) > 3:
        out.append((w[:-2], nv))
    if w.endswith("s") and not w.endswith("ss") and len(w) > 2:
        out.append((w[:-1], nv))
    for suffix, allowed in (("ed", v), ("ing", v), ("er", a), ("est", a)):
        if not w.endswith(suffix) or len(w) <= len(suffix) + 1:
            continue
        stem = w[: -len(suffix)]
        out.append((stem, allowed))
        out.append((stem + "e", allowed))  # baked → bake, nicer → nice
        if stem.endswith("i"):
            out.append((stem[:-1] + "y", allowed))  # cried → cry, happier → happy
        if len(stem) >= 3 and stem[-1] == stem[-2] and stem[-1] not in _VOWELS:
            out.append((stem[:-1], allowed))  # stopped → stop, bigger → big
    return out


def read_lexicon_file(path: Path) -> Lexicon:
    """Parse a ``word<TAB>pos`` file with a header line; one entry per word."""
    if not path.is_file():
        raise DataError(f"lexicon file {path} not found; reinstall tinyinterp or pass a path that exists")
    pos_by_word: dict[str, str] = {}
    lines = path.read_text(encoding="utf-8").splitlines()
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 2 or parts[1] not in POS_TAGS:
            raise DataError(f"{path}:{lineno}: expected 'word<TAB>noun|verb|adjective', got {line!r}; fix that line")
        word = parts[0].strip().lower()
        if word in pos_by_word:
            raise DataError(f"{path}:{lineno}: word {word!r} listed twice; keep one line per word")
        pos_by_word[word] = parts[1]
    return Lexicon(pos_by_word)


@functools.lru_cache(maxsize=None)
def load_lexicon(path: str | None = None) -> Lexicon:
    """The project lexicon (cached). ``path`` overrides the packaged file."""
    return read_lexicon_file(Path(path) if path else LEXICON_FILE)
