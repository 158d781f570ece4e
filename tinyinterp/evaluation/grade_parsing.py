"""Read a grader's reply into :class:`Grades` — exactly right, or ``InvalidReply``; never a wrong number.

The reply is a JSON object (structured output) or free text in whatever layout the LLM chose
(``Grammar: 8/10, Creativity: 7/10 …``, markdown lists, tables, ``Grammar (0-10): 8``,
``eight out of ten`` …). The free-text reader works in three steps, and each guards one way a
number could be misread:

1. **Labels.** A field is only read where it is *labelled*: the field word, at most a few plain
   words (``Consistency with the story's beginning``), an optional bracket that may state the
   scale (``(0-10)``, ``(out of 10)``), then a separator (``:`` ``=`` ``|`` or a spaced dash).
   A field word in prose (``The plot makes sense.``) is not a label, so its neighbours' numbers
   are never taken. A label that names two fields (``Grammar and creativity: 8``) is refused.
2. **Values.** A label owns only the text up to the next label, and only its first clause
   (up to a newline, ``;`` or a sentence end). The value must be the clause's leading number
   (words ``zero``…``ten`` count), or else the single ``N/10`` / ``N out of 10`` inside the clause.
   Anything else — ``N/A``, a range ``7-8``, ``7 or 8``, a decimal comma — leaves the field unread.
3. **Checks.** Scores must lie in 0–10 and any stated scale must be 10 (``-3/10``, ``4/5``,
   ``80%`` are refused). A field read twice with different values is refused. The age group is
   read from its letter *and* from any ages mentioned (``6-7``, ``10 to 12``, ``3 or under``);
   all must name the same group. Fractions are read exactly (``7½/10`` and ``7 1/2 out of 10`` are
   7.5). A scale declared anywhere for the scores (``Scores (1-5 scale):``, ``Scores (0-1):``, a
   table's ``Max`` column of 5) that is not 10 refuses the reply: a 4 out of 5 is never stored as a
   4 out of 10. A reply that revises itself (``9/10, no wait, 8/10``; ``~~9~~ 8``) is refused too:
   which number the grader meant is a guess. Grammar, creativity and consistency are required; plot and age
   group may be absent (the paper's own transcript omits Plot), but a present label whose value
   cannot be read makes the reply unparseable rather than silently ignored.

    >>> parse_grades("Grammar: 8/10, Creativity: 7/10, Consistency: 7/10, Age group: E (10-12)")
    Grades(grammar=8.0, creativity=7.0, consistency=7.0, plot=None, age_group='E')
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass

from tinyinterp.llm import InvalidReply

SCORES = ("grammar", "creativity", "consistency", "plot")
REQUIRED_SCORES = ("grammar", "creativity", "consistency")
"""The paper's own transcript omits Plot in one reply, so a missing plot grade is kept as None, not a failure."""
AGE_GROUPS = "ABCDEF"
AGE_RANGES = {"A": (0, 3), "B": (4, 5), "C": (6, 7), "D": (8, 9), "E": (10, 12), "F": (13, 16)}
"""The paper's age groups: A: 3 or under. B: 4-5. C: 6-7. D: 8-9. E: 10-12. F: 13-16."""


@dataclass(frozen=True)
class Grades:
    grammar: float
    creativity: float
    consistency: float
    plot: float | None
    age_group: str | None

    def to_dict(self) -> dict:
        return asdict(self)


# --- step 1: labels ------------------------------------------------------------------------------
_FIELD_WORD = re.compile(r"(?<![A-Za-z])(grammar|creativity|consistency|plot|age(?:[ \t-]?group)?)(?![A-Za-z])", re.I)
# After the field word: a few plain words (no digits, no clause punctuation), an optional bracket,
# then a separator. Separator-less "Grammar 8/10" is allowed only right after the word (checked below).
_LABEL_TAIL = re.compile(
    r"(?P<tail>[^\S\n]*(?:[A-Za-z’'\"-]+[^\S\n]*){0,8}?)"
    r"(?P<bracket>[(\[][^()\[\]\n]{0,40}[)\]][^\S\n]*)?"
    r"(?P<sep>[:=|]|(?<=\s)[-–—](?=\s)|(?=[-−–]?\d))"
)
_NA = re.compile(r"^\W*(?:n\s*/\s*a|none|not applicable|not available|-+|—)\W*$", re.I)


@dataclass
class _Label:
    field: str
    start: int  # where the field word starts (ends the previous label's value)
    value_start: int
    separator: str
    scale: float | None  # a scale stated in the bracket, e.g. 10 for "(0-10)"


def _field_name(word: str) -> str:
    word = word.lower()
    return "age_group" if word.startswith("age") else word


def _bracket_scale(bracket: str | None) -> float | None:
    if not bracket:
        return None
    numbers = [float(x) for x in re.findall(r"\d+(?:\.\d+)?", bracket)]
    return max(numbers) if numbers else None


def _labels(text: str) -> list[_Label]:
    labels = []
    for m in _FIELD_WORD.finditer(text):
        tail = _LABEL_TAIL.match(text, m.end())
        if tail is None:
            continue  # the field word in prose, e.g. "The plot makes sense."
        words = tail.group("tail")
        if tail.group("sep") == "" and (words.strip() or tail.group("bracket")):
            continue  # "The grammar has 2 errors": a number after prose is not a grade
        if _FIELD_WORD.search(words):
            other = _FIELD_WORD.search(words).group(1)
            raise InvalidReply(f"label {text[m.start():tail.end()].strip()!r} names both {m.group(1)} and {other}")
        labels.append(_Label(_field_name(m.group(1)), m.start(), tail.end(), tail.group("sep"),
                             _bracket_scale(tail.group("bracket"))))
    return labels


# --- step 2: values ------------------------------------------------------------------------------
_NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten".split())}
_NUMBER_WORD_RE = re.compile(r"(?<![A-Za-z])(" + "|".join(_NUMBER_WORDS) + r")(?![A-Za-z])", re.I)
_CLAUSE_END = re.compile(r"\n|[;:|]|[.!?,](?!\d)")  # ':' — "Plot:\nOverall: 7/10" is another label's value
_LEADING = re.compile(r"[\s*_`\"'(\[]*(?P<num>[-−–]?\s?\d+(?:\.\d+)?)")
_DENOMINATOR = re.compile(r"\s*(?:/|out\s+of|of)\s*(?P<den>\d+(?:\.\d+)?)", re.I)
_AMBIGUOUS_AFTER = re.compile(r"\s*(?:[-–—]\s*\d|,\d|%|(?:or|to|and)\s+(?:a\s+half|\d)|(?:→|->|=>)\s*\d)|[^\S\n]+\d", re.I)
_WITH_SCALE = re.compile(r"(?<![\w.])(?P<num>[-−–]?\d+(?:\.\d+)?)\s*(?:/|out\s+of)\s*(?P<den>\d+(?:\.\d+)?)", re.I)
_LIST_MARKER = re.compile(r"\s*\d+[.)]\s")
# A scale stated anywhere ("Grades (out of 5):", "on a scale of 1 to 5") other than 10 makes every bare number suspect.
_STATED_SCALE = re.compile(r"(?:out\s+of|scale\s+(?:of|from)\s+(?:\d+\s*(?:-|to)\s*)?)\s*(\d+(?:\.\d+)?)"
                           r"|(\d+)[-\s]point\s+scale", re.I)
# A scale starts at 0 or 1 and stays on one line ("score: 0.5\n- 2." is a grade and a list marker).
_RANGE = r"(?<![\d.])[01][^\S\n]*(?:-|–|—|to)[^\S\n]*(\d+(?:\.\d+)?)"
# A range declared for the scores: "(1-5 scale)", "scale: 0-1", "Scores (0-1):", "rated 1 to 5". The words
# before it may not hold digits, so "Grammar score: 8/10. Age group: E (10-12)" states no scale.
_DECLARED_RANGE = re.compile(
    r"(?:\b(?:scales?|scores?|scoring|grades?|grading|graded|ratings?|rated|marks?)\b[^\d\n]{0,20}?[(\[:]?\s*" + _RANGE + r")"
    r"|(?:" + _RANGE + r"\s*(?:points?\s+)?scale\b)", re.I)


_VULGAR = {"½": 0.5, "⅓": 1 / 3, "⅔": 2 / 3, "¼": 0.25, "¾": 0.75, "⅕": 0.2, "⅖": 0.4, "⅗": 0.6, "⅘": 0.8,
           "⅙": 1 / 6, "⅚": 5 / 6, "⅛": 0.125, "⅜": 0.375, "⅝": 0.625, "⅞": 0.875}
_VULGAR_RE = re.compile(r"(?P<whole>\d+)?[^\S\n]*(?P<frac>[" + "".join(_VULGAR) + r"])")
# "7 1/2" is seven and a half; "7 5/10" is two numbers (refused below), so tenths are not fractions here.
_MIXED_RE = re.compile(r"(?<![\d./])(?P<whole>\d+)[^\S\n]+(?P<num>\d+)[^\S\n]*/[^\S\n]*(?P<den>\d+)(?![\d.])")


def _decimal(x: float) -> str:
    return f"{x:.6f}".rstrip("0").rstrip(".")


def _read_fractions(text: str) -> str:
    """``7½`` and ``7 1/2`` as ``7.5``: the grade the grader wrote, not its whole part."""
    text = _VULGAR_RE.sub(lambda m: _decimal(int(m.group("whole") or 0) + _VULGAR[m.group("frac")]), text)

    def mixed(m: re.Match) -> str:
        num, den = int(m.group("num")), int(m.group("den"))
        if den == 10 or not 0 < num < den:
            return m.group(0)
        return _decimal(int(m.group("whole")) + num / den)
    return _MIXED_RE.sub(mixed, text)


def _clause(value: str) -> str:
    """The first clause of a label's value (its first line, up to a sentence end or ';')."""
    stripped = value.lstrip(" \t")
    if stripped.startswith("\n"):  # "Grammar:\n8/10" — but not "Grammar:\n2. Creativity: 7" (a list number)
        stripped = stripped.lstrip()
        if _LIST_MARKER.match(stripped):
            return ""
    m = _CLAUSE_END.search(stripped)
    clause = stripped[: m.start()] if m else stripped
    return _read_fractions(_NUMBER_WORD_RE.sub(lambda w: _NUMBER_WORDS[w.group(1).lower()], clause))


class _Unread(Exception):
    """This label's value holds no readable grade (kept apart from an explicit N/A)."""


def _number(text: str) -> float:
    return float(text.replace("−", "-").replace("–", "-").replace(" ", ""))


def _score_value(name: str, clause: str, scale: float | None) -> float | None:
    """The grade a clause states, None for an explicit N/A; raises _Unread or InvalidReply."""
    if scale is not None and scale != 10:
        raise InvalidReply(f"{name} is graded out of {scale:g}, expected 0-10")
    m = _LEADING.match(clause)
    if m is not None:
        value, rest = _number(m.group("num")), clause[m.end():]
        den = _DENOMINATOR.match(rest)
        if den is not None:
            rest = rest[den.end():]
            if float(den.group("den")) != 10:
                raise InvalidReply(f"{name} grade is out of {den.group('den')}, expected /10")
        if _AMBIGUOUS_AFTER.match(rest):
            raise InvalidReply(f"{name} grade {clause.strip()!r} is not one number")
        return _in_range(name, value)
    found = {(_number(g.group("num")), float(g.group("den"))) for g in _WITH_SCALE.finditer(clause)}
    if len(found) > 1:
        raise InvalidReply(f"{name} has several grades in {clause.strip()!r}")
    if found:
        (value, den), = found
        if den != 10:
            raise InvalidReply(f"{name} grade is out of {den:g}, expected /10")
        return _in_range(name, value)
    if _NA.match(clause):
        return None
    raise _Unread(clause)


def _in_range(name: str, value: float) -> float:
    if not 0 <= value <= 10:
        raise InvalidReply(f"{name} grade {value:g} is outside 0-10")
    return value


_LETTER = re.compile(r"(?<![A-Za-z’'])([A-F])(?![A-Za-z’'])")
_AGE_SPAN = re.compile(r"(?<![\d.])(\d{1,2})\s*(?:-|–|—|to)\s*(\d{1,2})(?![\d.])")
_AGE_UNDER = re.compile(r"(?:(\d{1,2})\s*(?:or|and)\s*(?:under|younger|below)|(?:under|below)\s*(\d{1,2}))", re.I)
_AGE_ONE = re.compile(r"(?<![\d.])(\d{1,2})(?![\d.])")


def _group_of(lo: int, hi: int, clause: str) -> str:
    groups = [g for g, (a, b) in AGE_RANGES.items() if a <= lo and hi <= b]
    if len(groups) != 1:
        raise InvalidReply(f"age {lo}-{hi} in {clause.strip()!r} is not inside one age group")
    return groups[0]


def _age_value(clause: str) -> str:
    """The one age group a clause names by letter and/or ages; raises _Unread or InvalidReply."""
    groups = set()
    bare = clause.strip(" \t*_`\"'.()[]:")
    if len(bare) == 1 and bare.upper() in AGE_GROUPS:
        groups.add(bare.upper())  # "age group: c"
    groups.update(_LETTER.findall(clause))  # capital letters only: "a 6-7 year old" has no group "a"
    rest = clause
    for m in _AGE_UNDER.finditer(rest):
        groups.add(_group_of(0, int(m.group(1) or m.group(2)), clause))
    rest = _AGE_UNDER.sub(" ", rest)
    for m in _AGE_SPAN.finditer(rest):
        groups.add(_group_of(int(m.group(1)), int(m.group(2)), clause))
    rest = _AGE_SPAN.sub(" ", rest)
    for m in _AGE_ONE.finditer(rest):
        groups.add(_group_of(int(m.group(1)), int(m.group(1)), clause))
    if len(groups) > 1:
        raise InvalidReply(f"age group {clause.strip()!r} names several groups {sorted(groups)}")
    if not groups:
        raise _Unread(clause)
    return groups.pop()


# --- whole-reply checks: tables with a scale column, self-corrections -----------------------------
_TABLE_ROW = re.compile(r"^[^\S\n]*\|(?P<cells>.*)\|[^\S\n]*$", re.M)
_TABLE_RULE = re.compile(r"^[\s:-]*-{2,}[\s:-]*$")
_NUMERIC_CELL = re.compile(r"^[^\w]*\d+(?:\.\d+)?\s*(?:/\s*\d+(?:\.\d+)?)?[^\w]*$")
# A column that holds each row's maximum ("Max", "Out of", "Possible points"), not the score column itself.
_SCALE_COLUMN = re.compile(r"^\W*(?:max(?:imum)?|out\s+of|possible|scale|total|of)(?:\s+(?:score|points?|grade|mark))?\W*$", re.I)


def _table_blocks(text: str) -> list[list[list[str]]]:
    """The reply's Markdown tables: lists of rows (lists of stripped cells), rule rows kept."""
    blocks, previous_end = [], -2
    for m in _TABLE_ROW.finditer(text):
        if m.start() != previous_end + 1:
            blocks.append([])
        previous_end = m.end()
        blocks[-1].append([c.strip() for c in m.group("cells").split("|")])
    return blocks


def _check_tables(text: str) -> None:
    """Refuse a table row whose score has a scale column other than 10, or several bare numbers."""
    for rows in _table_blocks(text):
        is_rule = [all(_TABLE_RULE.match(c) or not c for c in row) for row in rows]
        header = rows[0] if len(rows) > 1 and is_rule[1] else []
        scale_cols = [i for i, h in enumerate(header) if i > 0 and _SCALE_COLUMN.match(h)]
        for row, rule in zip(rows, is_rule):
            if rule or row is header:
                continue
            field = _FIELD_WORD.search(row[0]) if row else None
            if field is None or _field_name(field.group(1)) == "age_group":
                continue
            numbers = [i for i, c in enumerate(row[1:], 1) if _NUMERIC_CELL.match(c)]
            for i in scale_cols:
                if i in numbers:
                    if _number(re.sub(r"[^\d.]", "", row[i].split("/")[0])) != 10:
                        raise InvalidReply(f"{field.group(1)} is graded out of {row[i]} in the table, expected 10")
                    numbers.remove(i)
            if len(numbers) > 1:
                raise InvalidReply(f"table row {'| ' + ' | '.join(row) + ' |'!r} holds several numbers")


_REVISION = re.compile(r"\b(?:no\W{0,3}wait|wait|actually|correction|corrected|i\s+mean|sorry|make\s+that|"
                       r"on\s+second\s+thought|scratch\s+that|strike\s+that|let\s+me\s+(?:revise|reconsider|correct)|"
                       r"revised?|revising|changing|change\s+(?:that|my|it|this))\b", re.I)
_AFTER_REVISION = re.compile(r"[^\n]{0,80}")


def _check_revisions(text: str) -> None:
    """A grader that corrects itself ("9/10, no wait, 8/10") leaves two grades; refuse rather than pick one."""
    if re.search(r"~~[^~\n]*\d[^~\n]*~~", text):
        raise InvalidReply("reply strikes out a grade and writes another")
    for m in _REVISION.finditer(text):
        after = _AFTER_REVISION.match(text, m.end()).group(0)
        if re.search(r"\d", after) or _NUMBER_WORD_RE.search(after) or _FIELD_WORD.search(after):
            raise InvalidReply(f"reply revises a grade ({text[m.start():m.end() + len(after)].strip()[:60]!r})")


# --- step 3: assemble and check ------------------------------------------------------------------
def _from_text(content: str) -> Grades:
    text = re.sub(r"[*#`]", "", content).replace("_", " ")  # markdown emphasis/headings; "age_group"
    for m in _STATED_SCALE.finditer(text):
        if float(m.group(1) or m.group(2)) != 10:
            raise InvalidReply(f"reply grades on another scale ({m.group(0).strip()!r}), expected 0-10")
    for m in _DECLARED_RANGE.finditer(text):
        if float(m.group(1) or m.group(2)) != 10:
            raise InvalidReply(f"reply grades on another scale ({m.group(0).strip()!r}), expected 0-10")
    _check_tables(text)
    _check_revisions(text)
    labels = _labels(text)
    read: dict[str, set] = {}
    unread: dict[str, str] = {}
    for i, label in enumerate(labels):
        end = labels[i + 1].start if i + 1 < len(labels) else len(text)
        value = text[label.value_start:end]
        clause = _clause(value)
        if label.field == "age_group" and label.separator == "":
            continue  # "suitable for age 4-5" is prose, not the age-group answer
        try:
            if label.field == "age_group":
                v = _age_value(clause)
            else:
                v = _score_value(label.field, clause, label.scale)
                if label.separator == "" and not _WITH_SCALE.match(clause.strip()):
                    continue  # "Grammar 8" without a separator or /10 is too loose to be a label
        except _Unread:
            unread.setdefault(label.field, clause.strip()[:40])
            continue
        read.setdefault(label.field, set()).add(v)
    for name, values in read.items():
        if len(values) > 1:
            shown = sorted(values, key=lambda v: (v is None, v))
            raise InvalidReply(f"{name} is given several different values {shown}")
    for name in [*SCORES, "age_group"]:
        if name in unread and name not in read:
            raise InvalidReply(f"cannot read the {name.replace('_', ' ')} value {unread[name]!r}")
    for name in REQUIRED_SCORES:
        if read.get(name, {None}) == {None}:
            raise InvalidReply(f"no {name} grade in reply: {content[:80]!r}")
    one = {name: next(iter(values)) for name, values in read.items()}
    return Grades(one["grammar"], one["creativity"], one["consistency"], one.get("plot"), one.get("age_group"))


def _from_json(obj: dict) -> Grades:
    nested = [v for v in obj.values() if isinstance(v, dict)]
    if len(nested) == 1 and not any(_FIELD_WORD.fullmatch(str(k).strip().replace("_", " ")) for k in obj):
        return _from_json(nested[0])  # {"grades": {"grammar": 8, ...}}
    lowered = {}
    for key, value in obj.items():
        name = _field_name(str(key).strip()) if _FIELD_WORD.fullmatch(str(key).strip().replace("_", " ")) else None
        if name is None:
            continue
        if name in lowered and lowered[name] != value:
            raise InvalidReply(f"grades JSON gives {name} twice")
        lowered[name] = value
    missing = [s for s in REQUIRED_SCORES if lowered.get(s) is None]
    if missing:
        raise InvalidReply(f"grades JSON lacks {missing}")
    scores = {}
    for name in SCORES:
        value = lowered.get(name)
        if value is None:
            scores[name] = None
        elif isinstance(value, bool):
            raise InvalidReply(f"{name} grade {value!r} is not a number")
        elif isinstance(value, (int, float)):
            scores[name] = _in_range(name, float(value))
        else:
            try:
                scores[name] = _score_value(name, _clause(str(value)), None)
            except _Unread:
                raise InvalidReply(f"{name} grade {value!r} is not a number") from None
    age = lowered.get("age_group")
    if age is not None:
        try:
            age = _age_value(_clause(str(age)))
        except _Unread:
            raise InvalidReply(f"age group {age!r} is not one of {AGE_GROUPS}") from None
    if any(scores[s] is None for s in REQUIRED_SCORES):
        raise InvalidReply(f"grades JSON has no number for {[s for s in REQUIRED_SCORES if scores[s] is None]}")
    return Grades(**scores, age_group=age)


def parse_grades(content: str) -> Grades:
    """Grades from a JSON reply or free text; ``InvalidReply`` when any grade cannot be read for sure."""
    text = content.strip()
    if "{" in text:
        from tinyinterp.llm import extract_json
        try:
            obj = extract_json(text)
        except InvalidReply:
            obj = None
        if isinstance(obj, dict):
            return _from_json(obj)
    return _from_text(text)


def grades_json(grades: Grades) -> str:
    """A reply in the structured form (used by tests' fake graders)."""
    return json.dumps(grades.to_dict())
