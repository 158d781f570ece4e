"""Evaluation as in the TinyStories paper: completions, LLM grades, ROUGE memorization/diversity, probes.

Modules: ``prompts`` (prompt files), ``completions`` (n samples per prompt per checkpoint),
``grade_prompts`` (the paper's grading texts), ``grade_parsing`` (a grade reply read exactly or
flagged), ``grading`` (two-turn LLM grading,
cache, cost, CIs, curve over checkpoints), ``metrics`` (no-LLM metrics), ``rouge`` (ROUGE-k equal
to rouge-score + exact n-gram index), ``memorization`` (the three ROUGE analyses + histograms),
``similarity`` (★ plot similarity with an offline sentence-embedding model), ``probes``,
``pipeline`` (steps on a run dir, ``eval_demo``), ``cli`` (``tinyinterp eval ...``).
"""

__all__ = ["eval_demo"]


def __getattr__(name: str):
    if name == "eval_demo":  # lazy: importing a light submodule (rouge, prompts) must not pull in torch
        from tinyinterp.evaluation.pipeline import eval_demo

        return eval_demo
    raise AttributeError(name)
