"""Completion sets: n sampled completions per evaluation prompt, per model or checkpoint, as JSONL.

Each line of ``<run>/analysis/eval/completions/<tag>.jsonl`` is one completion with everything
needed to reproduce and grade it: the prompt (id, kind, text), the sample index, the sampling
settings, the model hash and (for checkpoints) the step and tokens seen. Every prompt is sampled
as one batch of ``n`` rows with a seed derived from (seed, prompt id), so a rerun resumes after the
last finished prompt and gives the same completions whatever was done before.

    >>> from tinyinterp.runs.rundir import load_run
    >>> cs = generate_completion_set(load_run("runs/demo"), load_prompts(), CompletionConfig(n=10))
    >>> cs.save("runs/demo/analysis/eval/completions/final.jsonl")
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tinyinterp.errors import RunDirError, TinyinterpError
from tinyinterp.evaluation.prompts import EvalPrompt
from tinyinterp.models.generation import SamplingConfig, generate_tokens, prompt_ids
from tinyinterp.runs.checkpoints import FINAL_TAG, Checkpoint
from tinyinterp.io.jsonl import append_jsonl, read_jsonl
from tinyinterp.runs.layout import COMPLETIONS_SUBDIR, eval_dir

log = logging.getLogger(__name__)


def completions_path(run_dir: Path, tag: str = FINAL_TAG) -> Path:
    return eval_dir(run_dir) / COMPLETIONS_SUBDIR / f"{tag}.jsonl"


@dataclass
class CompletionConfig:
    n: int = 10
    """Completions per prompt (the paper grades several per prompt)."""
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(max_new_tokens=200, temperature=1.0))
    seed: int = 0
    """Base seed; each prompt's batch uses a seed derived from (seed, prompt id)."""

    def __post_init__(self) -> None:
        if self.n < 1:
            raise TinyinterpError(f"--n must be >= 1, got {self.n}")

    def to_dict(self) -> dict:
        return {"n": self.n, "seed": self.seed, "sampling": self.sampling.to_dict()}


def file_hash(path: Path) -> str:
    """First 16 hex digits of the sha256 of a weights file (the cache key of grades)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def model_hash(model) -> str:
    """Hash of an in-memory model's weights (for models that do not come from a file)."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def _prompt_seed(seed: int, prompt_id: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{prompt_id}".encode()).digest()[:4], "big")


@dataclass
class CompletionSet:
    records: list[dict]

    def by_prompt(self) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = {}
        for r in self.records:
            out.setdefault(r["prompt_id"], []).append(r)
        return out

    def texts(self) -> list[str]:
        return [r["completion"] for r in self.records]

    @classmethod
    def load(cls, path: Path) -> CompletionSet:
        path = Path(path)
        if not path.is_file():
            raise RunDirError(f"{path}: completions not found; run `tinyinterp eval complete` first")
        return cls(read_jsonl(path))


def generate_completion_set(model, prompts: list[EvalPrompt], cfg: CompletionConfig, out_path: Path | None = None,
                            model_id: str | None = None, checkpoint: Checkpoint | None = None,
                            progress: bool = False) -> CompletionSet:
    """Sample ``cfg.n`` completions of every prompt; append them to ``out_path`` as they finish.

    Prompts already in ``out_path`` with the same model hash and settings are skipped (resume);
    a file made with other settings is refused rather than mixed.
    """
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise TinyinterpError("model has no tokenizer; load it with tinyinterp.load or rundir.load_run")
    model_id = model_id or model_hash(model)
    settings = cfg.to_dict()
    existing = read_jsonl(out_path) if out_path is not None else []
    for r in existing[:1]:
        if r.get("model_hash") != model_id or r.get("settings") != settings:
            raise TinyinterpError(f"{out_path}: holds completions of another model or other settings "
                                  "(or too few of them); delete it to sample again with these settings")
    done = {r["prompt_id"] for r in existing}
    records = list(existing)
    todo = [p for p in prompts if p.id not in done]
    iterator = todo
    if progress:
        from tqdm import tqdm
        iterator = tqdm(todo, desc="completions", unit="prompt")
    for prompt in iterator:
        # The one BOS policy (<|endoftext|> first); leave room for at least some new tokens: keep the
        # prompt's tail if it is too long.
        ids = prompt_ids(tokenizer, prompt.text, max_len=max(2, model.cfg.n_ctx - 16))
        sampling = SamplingConfig(**{**cfg.sampling.to_dict(), "seed": _prompt_seed(cfg.seed, prompt.id)})
        outs = generate_tokens(model, [ids] * cfg.n, sampling, eot_id=tokenizer.eot_id)
        new = []
        for i, toks in enumerate(outs):
            new.append({
                "prompt_id": prompt.id, "kind": prompt.kind, "prompt": prompt.text, "sample": i,
                "completion": tokenizer.decode(toks), "n_tokens": len(toks),
                "model_hash": model_id, "checkpoint": checkpoint.tag if checkpoint else FINAL_TAG,
                "step": checkpoint.step if checkpoint else None,
                "tokens_seen": checkpoint.tokens_seen if checkpoint else None,
                "settings": settings, "prompt_meta": {k: v for k, v in prompt.to_dict().items() if k not in ("text", "id", "kind")},
            })
        if out_path is not None:
            Path(out_path).parent.mkdir(parents=True, exist_ok=True)
            for r in new:
                append_jsonl(out_path, r)
        records.extend(new)
    log.info("%d completions (%d prompts new)", len(records), len(todo))
    return CompletionSet(records)


def record_prompt(record: dict) -> EvalPrompt:
    """The EvalPrompt a completion record was made from."""
    return EvalPrompt(text=record["prompt"], id=record["prompt_id"], kind=record.get("kind", "completion"),
                      **record.get("prompt_meta", {}))
