"""Knowledge / reasoning / context-tracking probes in the paper's style, scored automatically.

Each probe (``tinyinterp/resources/probes.yaml``) is a prompt that stops where a short answer is
expected, with accepted answers and optional tempting wrong ones. A model answers with a greedy
completion of a few tokens; the answer is right when an accepted answer occurs within the first
``window`` words and before any rejected one. Single words also match simple inflections
(``fix`` ↔ ``fixed``); phrases must occur as written. :func:`llm_judge` optionally asks an LLM
whether each answer is sensible, for a second opinion.

    >>> from tinyinterp import load
    >>> result = run_probes(load("runs/demo"))
    >>> result.accuracy, result.by_category()
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from tinyinterp.errors import DataError
from tinyinterp.evaluation.metrics import inflections, words_of

CATEGORIES = ("knowledge", "reasoning", "context")


@dataclass
class Probe:
    id: str
    category: str
    prompt: str
    accept: list[str]
    reject: list[str] = field(default_factory=list)


def load_probes(path: Path | str | None = None) -> list[Probe]:
    """The packaged probe set, or a YAML list of ``{id, category, prompt, accept, reject}``."""
    if path is None:
        text = resources.files("tinyinterp").joinpath("resources/probes.yaml").read_text(encoding="utf-8")
        source = "tinyinterp/resources/probes.yaml"
    else:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: probe file not found")
        text, source = path.read_text(encoding="utf-8"), str(path)
    try:
        items = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise DataError(f"{source}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(items, list) or not items:
        raise DataError(f"{source}: expected a non-empty list of probes")
    probes = []
    for i, item in enumerate(items):
        try:
            probe = Probe(**item)
        except TypeError as e:
            raise DataError(f"{source}: probe {i} is malformed ({e})") from None
        if probe.category not in CATEGORIES or not probe.accept:
            raise DataError(f"{source}: probe {probe.id!r} needs a category in {CATEGORIES} and accepted answers")
        probes.append(probe)
    return probes


def _first_position(answers: list[str], words: list[str]) -> int | None:
    """Index in ``words`` where the earliest of ``answers`` starts (phrases as written, words inflected)."""
    best = None
    for answer in answers:
        parts = words_of(answer)
        if not parts:
            continue
        for i in range(len(words) - len(parts) + 1):
            if len(parts) == 1:
                hit = words[i] in inflections(parts[0])
            else:
                hit = words[i: i + len(parts)] == parts
            if hit:
                best = i if best is None else min(best, i)
                break
    return best


def score_answer(probe: Probe, completion: str, window: int = 6) -> bool:
    """Right when an accepted answer appears in the first ``window`` words before any rejected one."""
    words = words_of(completion)[:window]
    ok = _first_position(probe.accept, words)
    bad = _first_position(probe.reject, words)
    return ok is not None and (bad is None or ok < bad)


@dataclass
class ProbeResult:
    rows: list[dict]
    """One row per probe: id, category, prompt, completion, correct (and llm_correct once judged)."""
    settings: dict

    @property
    def accuracy(self) -> float:
        return sum(r["correct"] for r in self.rows) / len(self.rows) if self.rows else 0.0

    def by_category(self) -> dict[str, float]:
        out = {}
        for cat in CATEGORIES:
            rows = [r for r in self.rows if r["category"] == cat]
            if rows:
                out[cat] = sum(r["correct"] for r in rows) / len(rows)
        return out

    def to_dict(self) -> dict:
        return {"accuracy": self.accuracy, "by_category": self.by_category(), "n_probes": len(self.rows),
                "settings": self.settings, "rows": self.rows}


def score_completions(probes: list[Probe], completions: list[str], window: int = 6) -> ProbeResult:
    """Score fixed completions (one per probe, same order)."""
    if len(probes) != len(completions):
        raise DataError(f"{len(probes)} probes but {len(completions)} completions")
    rows = [{**asdict(p), "completion": c, "correct": score_answer(p, c, window)} for p, c in zip(probes, completions)]
    return ProbeResult(rows, {"window": window})


def run_probes(model, probes: list[Probe] | None = None, max_new_tokens: int = 10, window: int = 6,
               progress: bool = False) -> ProbeResult:
    """Greedy-complete every probe with ``model`` and score the answers."""
    from tinyinterp.models.generation import SamplingConfig, generate_tokens, prompt_ids

    probes = probes or load_probes()
    cfg = SamplingConfig(max_new_tokens=max_new_tokens, temperature=0.0)
    tok, keep = model.tokenizer, max(2, model.cfg.n_ctx - max_new_tokens)  # tiny contexts keep the prompt's end
    iterator = probes
    if progress:
        from tqdm import tqdm
        iterator = tqdm(probes, desc="probes", unit="probe")
    completions = [tok.decode(generate_tokens(model, [prompt_ids(tok, p.prompt, max_len=keep)], cfg, eot_id=tok.eot_id)[0])
                   for p in iterator]
    result = score_completions(probes, completions, window)
    result.settings.update(max_new_tokens=max_new_tokens, decoding="greedy")
    return result


JUDGE_PROMPT = ("A young student continued the beginning of a sentence from a children's story.\n"
                "Beginning: {prompt}\nContinuation: {completion}\n"
                "Does the continuation answer in a way that makes sense (expected answers include: {accept})? "
                "Reply with only yes or no.")


def llm_judge(result: ProbeResult, client) -> ProbeResult:
    """Add ``llm_correct`` (True/False, None when the reply is neither yes nor no) to every row."""
    async def judge_all() -> list[bool | None]:
        async def one(row: dict) -> bool | None:
            reply = await client.complete(JUDGE_PROMPT.format(prompt=row["prompt"], completion=row["completion"],
                                                              accept=", ".join(row["accept"])),
                                          temperature=0.0, max_tokens=5)
            word = (words_of(reply.content) or [""])[0]
            return {"yes": True, "no": False}.get(word)
        try:
            return await asyncio.gather(*(one(r) for r in result.rows))
        finally:
            await client.aclose()

    for row, verdict in zip(result.rows, asyncio.run(judge_all())):
        row["llm_correct"] = verdict
    return result
