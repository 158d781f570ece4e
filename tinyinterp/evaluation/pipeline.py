"""Evaluation steps on a run directory, writing everything under ``<run>/analysis/eval/`` for the app.

Files: ``completions/<tag>.jsonl`` + ``metrics_<tag>.json`` (no-LLM metrics), ``grades.jsonl`` +
``grades_summary.json`` (+ ``grade_curve.json/png`` over checkpoints), ``rouge/*.json|png``
(+ ``rouge/plot_similarity.json``), ``probes.json``. :func:`eval_demo` runs the LLM-free steps
with small settings for ``make demo``.

    >>> eval_demo("runs/demo")     # completions, ROUGE histograms, probe scores in < 1 min on 2 cores
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from tinyinterp.runs.checkpoints import CHECKPOINT, FINAL, FINAL_TAG, Checkpoint, list_checkpoints
from tinyinterp.errors import RunDirError, TinyinterpError
from tinyinterp.evaluation.completions import (
    CompletionConfig, CompletionSet, completions_path, file_hash, generate_completion_set,
)
from tinyinterp.io.atomic import atomic_write_json
from tinyinterp.evaluation.metrics import set_stats
from tinyinterp.evaluation.prompts import EvalPrompt, load_prompts
from tinyinterp.models.generation import SamplingConfig
from tinyinterp.runs.rundir import load_run
from tinyinterp.runs.layout import CHECKPOINTS_DIR, ROUGE_SUBDIR, WEIGHTS_FILE, eval_dir

log = logging.getLogger(__name__)

PROBES_FILE = "probes.json"


def final_checkpoint(run_dir: Path) -> Checkpoint:
    """The final weights, evaluated under the tag ``final`` (records carry no step for them)."""
    return Checkpoint(Path(run_dir) / WEIGHTS_FILE, FINAL)


def checkpoints_to_evaluate(run_dir: Path, all_checkpoints: bool) -> list[Checkpoint]:
    """The final weights, or with ``all_checkpoints`` every training checkpoint of the run (by step)."""
    if not all_checkpoints:
        return [final_checkpoint(run_dir)]
    found = list_checkpoints(run_dir, kinds=[CHECKPOINT])
    if not found:
        raise RunDirError(f"{Path(run_dir) / CHECKPOINTS_DIR}: no checkpoints found; train with checkpointing or drop --all-checkpoints")
    return found


def complete(run_dir: Path, prompts: list[EvalPrompt], cfg: CompletionConfig, checkpoint: Checkpoint | None = None,
             progress: bool = False) -> CompletionSet:
    """Completions of one checkpoint (default: the final weights) + their no-LLM metrics."""
    run_dir = Path(run_dir)
    checkpoint = checkpoint or final_checkpoint(run_dir)
    model = load_run(run_dir, weights=checkpoint.weights)
    cs = generate_completion_set(model, prompts, cfg, completions_path(run_dir, checkpoint.tag),
                                 model_id=file_hash(checkpoint.weights), checkpoint=checkpoint, progress=progress)
    stats = set_stats(cs.records)
    atomic_write_json(eval_dir(run_dir) / f"metrics_{checkpoint.tag}.json",
                      {"checkpoint": checkpoint.tag, "step": checkpoint.step, "tokens_seen": checkpoint.tokens_seen,
                       **stats})
    return cs


def _select(records: list[dict], prompts: list[EvalPrompt], n: int, path: Path) -> list[dict] | None:
    """The first ``n`` samples of each requested prompt, in prompt order; None if any is missing."""
    by_prompt: dict[str, dict[int, dict]] = {}
    for r in records:
        by_prompt.setdefault(r["prompt_id"], {}).setdefault(r["sample"], r)
    out = []
    for p in prompts:
        samples = by_prompt.get(p.id, {})
        if any(r["prompt"] != p.text for r in samples.values()):
            raise TinyinterpError(f"{path}: prompt {p.id!r} was completed with another text; delete the file "
                                  "or use the prompt file it was made with")
        if any(i not in samples for i in range(n)):
            return None
        out.extend(samples[i] for i in range(n))
    return out


def _requested_completions(run_dir: Path, prompts: list[EvalPrompt], cfg: CompletionConfig, checkpoint: Checkpoint,
                           progress: bool) -> list[dict]:
    """Exactly the completions asked for (``--max-prompts`` prompts × ``--n`` samples).

    An existing completions file is re-used when it holds them all (it may hold more: other prompts,
    more samples); otherwise the missing ones are sampled (``complete`` resumes the file, or refuses
    in one line when the file was made with other settings).
    """
    path = completions_path(run_dir, checkpoint.tag)
    if path.is_file():
        chosen = _select(CompletionSet.load(path).records, prompts, cfg.n, path)
        if chosen is not None:
            return chosen
    chosen = _select(complete(run_dir, prompts, cfg, checkpoint, progress).records, prompts, cfg.n, path)
    assert chosen is not None  # complete() samples every requested prompt cfg.n times
    return chosen


def grade(run_dir: Path, grader, prompts: list[EvalPrompt], cfg: CompletionConfig, all_checkpoints: bool = False,
          progress: bool = False) -> dict:
    """Grade the final model (or every checkpoint); writes the summary and, over checkpoints, the curve."""
    from tinyinterp.evaluation.grading import (
        CURVE_FILE, CURVE_PNG, GRADES_FILE, SUMMARY_FILE, grade_curve, plot_grade_curve, summarize,
    )

    run_dir = Path(run_dir)
    checkpoints = checkpoints_to_evaluate(run_dir, all_checkpoints)
    results = []
    for ck in checkpoints:
        records = _requested_completions(run_dir, prompts, cfg, ck, progress)
        results.extend(grader.grade(records, out_path=eval_dir(run_dir) / GRADES_FILE, progress=progress))
    summary = summarize(results)
    out = {"grader_model": grader.client.model, "cost_usd_this_run": grader.client.stats.cost_usd,
           "llm_stats": grader.client.stats.as_dict(), "checkpoints": summary}
    atomic_write_json(eval_dir(run_dir) / SUMMARY_FILE, out)
    if all_checkpoints:
        curve = grade_curve(summary)
        atomic_write_json(eval_dir(run_dir) / CURVE_FILE, curve)
        plot_grade_curve(curve, eval_dir(run_dir) / CURVE_PNG)
        out["curve"] = curve
    return out


def rouge(run_dir: Path, n: int = 2, train_files: list[Path] | None = None, half_stories: int = 0,
          max_train_stories: int | None = None, similarity: bool = False, tag: str = FINAL_TAG,
          progress: bool = False) -> dict:
    """The three ROUGE analyses on a completion set, histograms as PNG + JSON (+ ★ plot similarity)."""
    from tinyinterp.evaluation.memorization import (
        half_story_rouge, load_training_stories, max_training_rouge, save_histograms, within_prompt_rouge,
    )
    from tinyinterp.evaluation.rouge import NgramIndex

    run_dir = Path(run_dir)
    out_dir = eval_dir(run_dir) / ROUGE_SUBDIR
    cs = CompletionSet.load(completions_path(run_dir, tag))
    texts = cs.texts()
    stories = load_training_stories(train_files)
    if max_train_stories:
        stories = stories[:max_train_stories]
    t0 = time.perf_counter()
    index = NgramIndex.build(stories, n=n, progress=progress)
    training = max_training_rouge(texts, index, stories, progress=progress)
    within = within_prompt_rouge(cs.records, n)
    series = {f"max ROUGE-{n} precision vs training set": training["precision"],
              f"max ROUGE-{n} F vs training set": training["fmeasure"],
              f"max ROUGE-{n} precision vs same-prompt completions": within["precision"]}
    summary = {"n": n, "n_completions": len(texts), "n_training_stories": len(stories),
               "training_max_precision_mean": _mean(training["precision"]),
               "training_max_fmeasure_mean": _mean(training["fmeasure"]),
               "within_prompt_precision_mean": _mean(within["precision"]),
               "examples": training.get("examples", [])}
    if half_stories:
        model = load_run(run_dir)
        halves = half_story_rouge(model, stories[:half_stories], n, progress=progress)
        series[f"ROUGE-{n} precision, completed half vs true half"] = halves["precision"]
        summary["half_story_precision_mean"] = _mean(halves["precision"])
        summary["half_story_fmeasure_mean"] = _mean(halves["fmeasure"])
    save_histograms(series, out_dir, f"ROUGE-{n}: memorization and diversity ({tag})", f"rouge{n}_{tag}")
    atomic_write_json(out_dir / f"training_max_rouge{n}_{tag}.json", training)
    if similarity:
        from tinyinterp.evaluation.similarity import plot_similarity

        sim = plot_similarity(texts, stories, training["precision"], progress=progress, cache_dir=out_dir)
        atomic_write_json(out_dir / f"plot_similarity_{tag}.json", sim)
        summary["plot_similarity_mean_cosine"] = sim["mean_cosine"]
    summary["seconds"] = time.perf_counter() - t0
    atomic_write_json(out_dir / f"summary_{tag}.json", summary)
    return summary


def probes(run_dir: Path, probe_file: Path | None = None, judge_client=None, progress: bool = False) -> dict:
    """Probe scores of the final model, optionally with an LLM's second opinion."""
    from tinyinterp.evaluation.probes import llm_judge, load_probes, run_probes

    result = run_probes(load_run(run_dir), load_probes(probe_file), progress=progress)
    if judge_client is not None:
        llm_judge(result, judge_client)
    out = result.to_dict()
    atomic_write_json(eval_dir(run_dir) / PROBES_FILE, out)
    return out


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def eval_demo(run_dir: Path, n_prompts: int = 8, n: int = 3, max_new_tokens: int = 60,
              prompts_file: Path | None = None) -> dict:
    """LLM-free evaluation of a (small) model in bounded time: completions, ROUGE, probes.

    Defaults keep it well under a minute for a 1M-parameter model on 2 CPU cores: 8 prompts × 3
    completions of ≤ 60 tokens, ROUGE-2 over the whole shared training set, 30 probes.
    """
    run_dir = Path(run_dir)
    prompts = load_prompts(prompts_file)[:n_prompts]
    cfg = CompletionConfig(n=n, sampling=SamplingConfig(max_new_tokens=max_new_tokens, temperature=1.0))
    t0 = time.perf_counter()
    completions_path(run_dir).unlink(missing_ok=True)  # the demo model may have been retrained: start afresh
    threads = torch.get_num_threads()
    # A 1M-parameter model's matmuls are tiny: one thread is ~2x faster alone and ~8x faster on a busy box.
    torch.set_num_threads(1)
    try:
        cs = complete(run_dir, prompts, cfg)
        rouge_summary = rouge(run_dir, n=2)
        probe_summary = probes(run_dir)
    finally:
        torch.set_num_threads(threads)
    out = {"completions": len(cs.records), "rouge": {k: v for k, v in rouge_summary.items() if k != "examples"},
           "probe_accuracy": probe_summary["accuracy"], "probe_by_category": probe_summary["by_category"],
           "seconds": time.perf_counter() - t0}
    log.info("eval demo: %d completions, mean max ROUGE-2 %.3f, probe accuracy %.2f in %.1fs", out["completions"],
             rouge_summary["training_max_precision_mean"] or 0.0, out["probe_accuracy"], out["seconds"])
    return out
