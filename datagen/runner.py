"""N stories → JSONL, resumable: skip finished ids, retry failed ones, one fsynced line per story.

``run_jobs`` is the shared engine (also used by ``instruct``): a pool of workers, as many as the
client's concurrency limit, pulls jobs, calls the LLM (the client retries transient errors), and
appends each accepted record to the output file at once. A job that still fails goes to
``<out>.errors.jsonl`` and is retried by the next run, because only the output file marks an id
done. At the end the output is compacted (duplicates / torn lines removed) atomically.

Example::

    client = LLMClient(LLMConfig(base_url="http://127.0.0.1:8000/v1"))
    summary = generate_stories(StoryRunConfig(out=Path("stories.jsonl"), n=100, seed=0), client)
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from tqdm import tqdm

from datagen.prompts import PromptSpec, make_prompt_specs
from datagen.store import AppendLog, compact, read_records, repair_torn_tail
from tinyinterp.errors import TinyinterpError
from tinyinterp.llm import ChatResult, InvalidReply, LLMClient, LLMError

log = logging.getLogger(__name__)


@dataclass
class Job:
    """One LLM call whose accepted reply becomes one output record."""

    id: str
    messages: list[dict]
    make_record: Callable[[ChatResult], dict]
    validate: Callable[[Any], Any] | None = None
    chat_kwargs: dict = field(default_factory=dict)


@dataclass
class RunSummary:
    out: str
    requested: int
    already_done: int
    written: int
    failed: int
    duplicates_removed: int
    seconds: float
    llm: dict

    def as_dict(self) -> dict:
        return asdict(self)


def errors_path_for(out: Path) -> Path:
    return out.with_name(out.stem + ".errors.jsonl")


def done_ids(out: Path) -> set[str]:
    """Ids already in ``out`` (after cutting a torn last line)."""
    repair_torn_tail(out)
    return set(read_records(out))


async def run_jobs(jobs: list[Job], client: LLMClient, out: Path, *, desc: str = "generating",
                   progress: bool = True, already_done: int = 0) -> RunSummary:
    """Run ``jobs`` (already filtered to the pending ones) and append their records to ``out``."""
    started = time.time()
    errors = errors_path_for(out)
    queue = iter(jobs)
    written = failed = 0
    bar = tqdm(total=len(jobs), desc=desc, unit="rec", disable=not progress, dynamic_ncols=True)

    with AppendLog(out) as sink, AppendLog(errors) as error_log:
        async def worker() -> None:
            nonlocal written, failed
            for job in queue:  # a shared iterator: each job is taken by exactly one worker
                try:
                    result = await client.chat(job.messages, validate=job.validate, **job.chat_kwargs)
                    sink.append(job.make_record(result))
                    written += 1
                except (LLMError, InvalidReply) as err:
                    failed += 1
                    error_log.append({"id": job.id, "error": str(err), "time": time.time()})
                    log.warning("record %s failed: %s", job.id, err)
                bar.update(1)
                bar.set_postfix(cost=f"${client.stats.cost_usd:.4f}", retries=client.stats.retries, failed=failed)

        workers = [asyncio.create_task(worker()) for _ in range(client.config.max_concurrency)]
        try:
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()
            bar.close()
            await client.aclose()
    removed = compact(out)
    return RunSummary(out=str(out), requested=len(jobs) + already_done, already_done=already_done,
                      written=written, failed=failed, duplicates_removed=removed,
                      seconds=round(time.time() - started, 3), llm=client.stats.as_dict())


@dataclass
class StoryRunConfig:
    """One story-generation run; (seed, index) fix each prompt, so reruns ask for the same stories."""

    out: Path
    n: int
    seed: int = 0
    temperature: float = 1.0
    max_tokens: int = 1000
    """Completion budget per story (the paper's stories are 100–400 words)."""
    min_words: int = 20
    """A reply shorter than this is not a story (refusal, truncation): it is retried."""
    max_features: int = 3
    progress: bool = True

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.n < 1:
            raise TinyinterpError(f"--n must be ≥ 1, got {self.n}")
        if self.out.suffix != ".jsonl":
            raise TinyinterpError(f"--out {self.out} must end in .jsonl (one JSON record a line)")


def story_validator(min_words: int) -> Callable[[Any], str]:
    def validate(content: Any) -> str:
        story = str(content).strip()
        if len(story.split()) < min_words:
            raise InvalidReply(f"reply has {len(story.split())} words, fewer than {min_words}: not a story")
        return story
    return validate


def story_record(spec: PromptSpec, result: ChatResult, source: str = "chat") -> dict:
    """The output record; ``text`` is what the trainer's corpus reader trains on."""
    return {
        "id": spec.id, "index": spec.index, "seed": spec.seed, "prompt": spec.prompt,
        "words": asdict(spec.words), "features": spec.features,
        "story": result.value, "text": result.value,
        "model": result.model, "finish_reason": result.finish_reason, "source": source,
        "usage": {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens},
    }


def story_jobs(cfg: StoryRunConfig, specs: list[PromptSpec]) -> list[Job]:
    validate = story_validator(cfg.min_words)
    return [Job(id=s.id, messages=[{"role": "user", "content": s.prompt}],
                make_record=lambda r, s=s: story_record(s, r), validate=validate,
                chat_kwargs={"temperature": cfg.temperature, "max_tokens": cfg.max_tokens, "seed": s.seed})
            for s in specs]


def pending_specs(cfg: StoryRunConfig) -> tuple[list[PromptSpec], int]:
    """(specs not yet in the output, number already done)."""
    specs = make_prompt_specs(cfg.n, cfg.seed, max_features=cfg.max_features)
    done = done_ids(cfg.out)
    pending = [s for s in specs if s.id not in done]
    return pending, len(specs) - len(pending)


def generate_stories(cfg: StoryRunConfig, client: LLMClient) -> RunSummary:
    """Generate the run's missing stories; safe to call again after a crash or a failed run."""
    pending, n_done = pending_specs(cfg)
    log.info("%s: %d of %d stories already done, %d to generate", cfg.out, n_done, cfg.n, len(pending))
    return asyncio.run(run_jobs(story_jobs(cfg, pending), client, cfg.out, desc="stories",
                                progress=cfg.progress, already_done=n_done))
