"""Hostile strings in every data file the app shows (issue 18, item 8), for the AppTest and browser tests.

Each string is Markdown / HTML that would make a browser fetch from ``REMOTE`` (a TEST-NET address that
no machine answers) or run a script if a page rendered it as Markdown or HTML: an image, a raw ``<img>``,
a ``javascript:`` link, a ``<script>``. :func:`add_hostile_strings` writes them into a run's comparison,
explanations, grades log and summary, emergence summaries, dictionaries (a folder named with HTML whose
``cfg.json`` names a hostile hook) and ``config.json``, plus a run folder whose name carries HTML. The pages must show them as text.
"""

from __future__ import annotations

import json
from pathlib import Path

REMOTE = "203.0.113.9"
HOSTILE = (f"![pixel](http://{REMOTE}/md.png) <img src=\"http://{REMOTE}/html.png\"> "
           f"[click](javascript:alert(7)) <script>alert(8)</script> **bold**")
HOSTILE_NAME = '<img src=x onerror=alert(9)>'
"""A folder name cannot hold '/', so no remote URL: an inline event handler instead."""
HOSTILE_QUERY = f"![q](http://{REMOTE}/query.png)"
"""A ``?run=`` / ``?layer=`` value: the refusal message quotes it."""


def _edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def add_hostile_strings(root: Path, run: str = "demo") -> None:
    """Put :data:`HOSTILE` into every data file of ``root/run`` that a page shows (the files stay loadable)."""
    base = root / run
    analysis = base / "analysis"

    def comparison(d):
        d["a"]["name"], d["b"]["name"], d["corpus"] = HOSTILE, HOSTILE + " b", HOSTILE
        for row in d["a"].get("top_neurons", [])[:1]:
            row["top_tokens"] = HOSTILE

    for path in analysis.glob("compare/*/comparison.json"):
        _edit_json(path, comparison)
    for path in sorted((analysis / "explanations").glob("*.jsonl")):
        lines = path.read_text().splitlines()
        if not lines:
            continue
        first = json.loads(lines[0])
        lines[0] = json.dumps({**first, "explanation": HOSTILE})  # the first record of a neuron wins
        path.write_text("\n".join(lines) + "\n")
    eval_dir = analysis / "eval"
    grades = eval_dir / "grades.jsonl"
    record = json.loads(grades.read_text().splitlines()[0])
    with open(grades, "a") as f:
        f.write(json.dumps({**record, "prompt_id": HOSTILE, "grader_model": HOSTILE}) + "\n")
    _edit_json(eval_dir / "grades_summary.json", lambda d: d.update({HOSTILE: next(iter(d.values()))}))
    (eval_dir / "notes.json").write_text(json.dumps({"note": HOSTILE, HOSTILE: [HOSTILE]}))
    for path in sorted(analysis.glob("emergence/step_*/summary.json")):
        _edit_json(path, lambda d: d["heads"][0][0].update(head_class=HOSTILE))
    _edit_json(base / "config.json", lambda d: d.update(note=HOSTILE))
    for cfg in sorted((analysis / "dictionaries").glob("*/cfg.json"))[:1]:  # an unevaluated copy under a hostile name
        copy = cfg.parent.parent / HOSTILE_NAME
        copy.mkdir()
        (copy / "cfg.json").write_text(cfg.read_text())
        _edit_json(copy / "cfg.json", lambda d: d["tinyinterp"].update(hook_in=HOSTILE, hook_out=HOSTILE))
    hostile_run = root / HOSTILE_NAME  # a run being trained (metrics only) under a name with HTML
    hostile_run.mkdir()
    (hostile_run / "metrics.jsonl").write_text(json.dumps({"step": 1, "tokens": 10, "train_loss": 5.0}) + "\n")
