"""LLM grading of completions with the paper's two-turn protocol, cached, costed and summarised.

For each completion: turn 1 (beginning ``***`` completion, "provide your general assessment") →
the grader's assessment → turn 2 ("Now, grade ...") → grades of grammar, creativity, consistency
and plot (0–10) and an age group A–F. Turn 2 asks for structured output (``response_format``
json_schema) when the server supports it and falls back to plain text otherwise; either reply is read
by :mod:`grade_parsing`, which gives the grades exactly or refuses (never a wrong number). A reply
that cannot be parsed is re-asked ``parse_retries`` times
and then stored with ``status="unparseable"`` — it is excluded from means, never scored as 0.

Results are appended to ``<run>/analysis/eval/grades.jsonl``, keyed by (model hash, prompt,
completion, grader model, variant); a rerun re-uses every ``ok`` record and retries the rest.
Means come with a 95% confidence interval computed over per-prompt means (the completions of
one prompt are not independent samples).

    >>> grader = Grader(LLMClient(LLMConfig(base_url="http://127.0.0.1:8000/v1")))
    >>> results = grader.grade(completion_set.records, out_path=eval_dir(run) / GRADES_FILE)
    >>> summarize(results)["final"]["scores"]["grammar"]["mean"]
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import openai

from tinyinterp.evaluation.completions import record_prompt
from tinyinterp.evaluation.grade_parsing import AGE_GROUPS, SCORES, parse_grades
from tinyinterp.evaluation.grade_prompts import GRADE_SCHEMA, completion_turns, instruct_turns
from tinyinterp.io.jsonl import append_jsonl, read_jsonl
from tinyinterp.llm import InvalidReply, LLMClient, LLMError

log = logging.getLogger(__name__)

GRADES_FILE = "grades.jsonl"
SUMMARY_FILE = "grades_summary.json"
CURVE_FILE = "grade_curve.json"
CURVE_PNG = "grade_curve.png"


@dataclass
class GraderConfig:
    structured: str = "auto"
    """``auto``: ask for json_schema output and fall back to text if the server refuses; ``on``; ``off``."""
    temperature: float = 0.0
    max_tokens_assessment: int = 500
    max_tokens_grades: int = 200
    parse_retries: int = 2
    """Extra turn-2 requests after an unparseable grade reply, before the record is flagged."""

    def __post_init__(self) -> None:
        if self.structured not in ("auto", "on", "off"):
            raise ValueError(f"structured must be auto, on or off, got {self.structured!r}")


def cache_key(model_hash: str, prompt: str, completion: str, grader_model: str, variant: str) -> str:
    payload = "\x00".join([model_hash, prompt, completion, grader_model, variant])
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:24]


class Grader:
    """Grades completion records (from :mod:`completions`) against any OpenAI-compatible server."""

    def __init__(self, client: LLMClient, config: GraderConfig | None = None):
        self.client, self.config = client, config or GraderConfig()
        self._structured = {"auto": None, "on": True, "off": False}[self.config.structured]
        self._probe_lock: asyncio.Lock | None = None

    async def _grades_reply(self, messages: list[dict]):
        kwargs = dict(temperature=self.config.temperature, max_tokens=self.config.max_tokens_grades)
        if self._structured is None and self._probe_lock is not None:
            async with self._probe_lock:  # the first request finds out whether the server does json_schema
                if self._structured is None:
                    return await self._try_structured(messages, kwargs)
        if self._structured is not False:
            return await self._try_structured(messages, kwargs)
        return await self.client.chat(messages, **kwargs)

    async def _try_structured(self, messages: list[dict], kwargs: dict):
        if self._structured is not False:
            schema = {"type": "json_schema", "json_schema": {"strict": True, **GRADE_SCHEMA}}
            try:
                reply = await self.client.chat(messages, response_format=schema, **kwargs)
                self._structured = True
                return reply
            except LLMError as err:
                if self.config.structured == "on" or not isinstance(err.__cause__, openai.BadRequestError):
                    raise
                log.info("grader server refuses structured output; using the text grade parser")
                self._structured = False
        return await self.client.chat(messages, **kwargs)

    async def grade_record(self, rec: dict) -> dict:
        """Grade one completion record; returns the result record (status ok / unparseable / error)."""
        prompt = record_prompt(rec)
        variant = prompt.kind
        if variant == "instruct":
            # The model continues "Story:" with " Once…" (the format's separator space): grade the story itself.
            turn1, turn2 = instruct_turns(rec["completion"].strip(), prompt.words, prompt.sentence, prompt.summary)
        else:
            turn1, turn2 = completion_turns(prompt.text, rec["completion"])
        out = {k: rec.get(k) for k in ("model_hash", "checkpoint", "step", "tokens_seen", "prompt_id", "sample")}
        out.update(key=cache_key(rec["model_hash"], prompt.text, rec["completion"], self.client.model, variant),
                   grader_model=self.client.model, variant=variant, grades=None, cost_usd=0.0, grade_requests=0)
        try:
            first = await self.client.chat([{"role": "user", "content": turn1}], temperature=self.config.temperature,
                                           max_tokens=self.config.max_tokens_assessment)
            out["cost_usd"] += first.cost_usd
            out["assessment"] = first.content
            messages = [{"role": "user", "content": turn1}, {"role": "assistant", "content": first.content},
                        {"role": "user", "content": turn2}]
            for _ in range(self.config.parse_retries + 1):
                reply = await self._grades_reply(messages)
                out["cost_usd"] += reply.cost_usd
                out["grade_requests"] += 1
                out["raw_grades"] = reply.content
                try:
                    out["grades"] = parse_grades(reply.content).to_dict()
                    out["status"] = "ok"
                    break
                except InvalidReply as err:
                    out["status"], out["error"] = "unparseable", str(err)
                    log.warning("unparseable grades for %s/%s: %s", rec["prompt_id"], rec.get("sample"), err)
        except LLMError as err:
            out["status"], out["error"] = "error", str(err)
        return out

    def grade(self, records: list[dict], out_path: Path | None = None, progress: bool = False) -> list[dict]:
        """Grade every record (re-using ``ok`` results cached in ``out_path``); results align with ``records``."""
        return asyncio.run(self.agrade(records, out_path, progress))

    async def agrade(self, records: list[dict], out_path: Path | None = None, progress: bool = False) -> list[dict]:
        self._probe_lock = asyncio.Lock()  # bound to this event loop
        # The log is a cache: a damaged line costs one regrade, never the run (read_jsonl warns with file:line).
        logged = read_jsonl(out_path, skip_bad=True) if out_path else []
        cached = {r["key"]: r for r in logged if r.get("status") == "ok" and isinstance(r.get("key"), str)}
        results: list[dict | None] = []
        todo = []
        for i, rec in enumerate(records):
            variant = rec.get("kind", "completion")
            key = cache_key(rec["model_hash"], rec["prompt"], rec["completion"], self.client.model, variant)
            hit = cached.get(key)
            results.append({**hit, "cached": True} if hit else None)
            if hit is None:
                todo.append(i)
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=len(todo), desc="grading", unit="completion")
        if out_path is not None:
            Path(out_path).parent.mkdir(parents=True, exist_ok=True)

        async def run(i: int) -> None:
            res = await self.grade_record(records[i])
            results[i] = res
            if out_path is not None:
                append_jsonl(out_path, res)  # single-threaded event loop: appends never interleave
            if bar is not None:
                bar.update(1)
                bar.set_postfix(cost=f"${self.client.stats.cost_usd:.4f}")

        try:
            await asyncio.gather(*(run(i) for i in todo))
        finally:
            if bar is not None:
                bar.close()
            await self.client.aclose()
        log.info("graded %d completions (%d cached), cost $%.4f", len(todo), len(records) - len(todo),
                 self.client.stats.cost_usd)
        return results  # type: ignore[return-value]


# Two-sided 95% Student-t quantiles for small samples (df 1..30); the normal 1.96 beyond.
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042]


def mean_ci(values_by_cluster: dict[str, list[float]]) -> dict:
    """Mean over clusters (prompts) of cluster means, with a 95% t-interval; CI is None with one cluster."""
    means = [sum(v) / len(v) for v in values_by_cluster.values() if v]
    n_values = sum(len(v) for v in values_by_cluster.values())
    if not means:
        return {"mean": None, "ci_low": None, "ci_high": None, "n": 0, "n_prompts": 0}
    m = sum(means) / len(means)
    if len(means) < 2:
        return {"mean": m, "ci_low": None, "ci_high": None, "n": n_values, "n_prompts": len(means)}
    sd = math.sqrt(sum((x - m) ** 2 for x in means) / (len(means) - 1))
    df = len(means) - 1
    half = (_T975[df - 1] if df <= len(_T975) else 1.96) * sd / math.sqrt(len(means))
    return {"mean": m, "ci_low": m - half, "ci_high": m + half, "n": n_values, "n_prompts": len(means)}


def summarize(results: list[dict]) -> dict[str, dict]:
    """Per checkpoint tag: mean + CI of each score, age-group counts, flagged counts and cost."""
    by_tag: dict[str, list[dict]] = {}
    for r in results:
        by_tag.setdefault(r.get("checkpoint") or "final", []).append(r)
    summary = {}
    for tag, rows in by_tag.items():
        ok = [r for r in rows if r.get("status") == "ok"]
        scores = {}
        for s in SCORES:
            clusters: dict[str, list[float]] = {}
            for r in ok:
                if r["grades"].get(s) is not None:
                    clusters.setdefault(r["prompt_id"], []).append(r["grades"][s])
            scores[s] = mean_ci(clusters)
        ages = [r["grades"].get("age_group") for r in ok if r["grades"].get("age_group")]
        summary[tag] = {
            "step": rows[0].get("step"), "tokens_seen": rows[0].get("tokens_seen"),
            "model_hash": rows[0].get("model_hash"), "grader_model": rows[0].get("grader_model"),
            "n": len(rows), "n_ok": len(ok),
            "n_unparseable": sum(r.get("status") == "unparseable" for r in rows),
            "n_error": sum(r.get("status") == "error" for r in rows),
            "scores": scores,
            "age_groups": {a: ages.count(a) for a in AGE_GROUPS},
            "mean_age_index": (sum(AGE_GROUPS.index(a) for a in ages) / len(ages)) if ages else None,
            "cost_usd": sum(r.get("cost_usd", 0.0) for r in rows if not r.get("cached")),
        }
    return summary


def grade_curve(summary: dict[str, dict]) -> dict:
    """The four scores vs tokens seen (or step) over checkpoints, sorted by training progress."""
    points = []
    for tag, s in summary.items():
        x = s.get("tokens_seen") if s.get("tokens_seen") is not None else s.get("step")
        points.append({"checkpoint": tag, "step": s.get("step"), "tokens_seen": s.get("tokens_seen"), "x": x,
                       **{name: s["scores"][name] for name in SCORES}})
    points.sort(key=lambda p: (p["x"] is None, p["x"] or 0))
    x_label = "tokens seen" if all(p["tokens_seen"] is not None for p in points) else "step"
    return {"x_label": x_label, "scores": list(SCORES), "points": points}


def plot_grade_curve(curve: dict, path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [p for p in curve["points"] if p["x"] is not None]
    fig, ax = plt.subplots(figsize=(6, 4))
    for name in curve["scores"]:
        xs = [p["x"] for p in pts if p[name]["mean"] is not None]
        ys = [p[name]["mean"] for p in pts if p[name]["mean"] is not None]
        lo = [p[name]["ci_low"] if p[name]["ci_low"] is not None else p[name]["mean"] for p in pts if p[name]["mean"] is not None]
        hi = [p[name]["ci_high"] if p[name]["ci_high"] is not None else p[name]["mean"] for p in pts if p[name]["mean"] is not None]
        ax.plot(xs, ys, marker="o", label=name)
        ax.fill_between(xs, lo, hi, alpha=0.2)
    ax.set_xlabel(curve["x_label"])
    ax.set_ylabel("grade (0-10)")
    ax.set_ylim(0, 10)
    ax.legend()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(path).with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
    return Path(path)
