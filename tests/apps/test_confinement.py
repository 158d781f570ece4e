"""Every file the app opens lies inside the runs root after symlinks are resolved (issue 18, items 7 and 9).

Whatever names the file — a page, a symlink inside a run, a run name inside ``sweep_summary.json`` — the
app reads it only through :func:`apps.runs_root.resolve_in_root`. These tests build runs roots whose files
are symlinks to a copy outside the root, record every ``open`` the Python process makes while the pages
run (``sys.addaudithook``), and assert that none of them resolves outside the root, that the pages say
so in one line, and that nothing from outside is shown.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from apps.views import PAGE_NAMES
from tests.support.app_pages import open_page, page_text
from tests.support.app_depth import deep_root  # noqa: F401  (fixture)

SECRET_LOSS = 4.24242
_OPENED: list[str] | None = None  # set while a test records opens; the hook is process-wide and cannot be removed


def _audit(event: str, args) -> None:
    if _OPENED is not None and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        _OPENED.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)


@pytest.fixture
def opened():
    """Paths passed to ``open`` (any Python code in this process) while the test runs; a test clears it
    (``opened.clear()``) once its files are written."""
    global _OPENED
    _OPENED = []
    try:
        yield _OPENED
    finally:
        _OPENED = None


def _outside(paths: list[str], outside: Path) -> list[str]:
    return sorted({p for p in paths if Path(os.path.realpath(p)).is_relative_to(outside)})


def _mirror(src: Path, dst: Path, keep: set[str]) -> None:
    """``dst``: the folders of ``src``; each file a symlink to its ``src`` twin, except ``keep`` (copied)."""
    for where, _, files in os.walk(src):
        rel = Path(where).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for name in files:
            if (rel / name).as_posix() in keep:
                shutil.copy2(Path(where) / name, dst / rel / name)
            else:
                os.symlink(Path(where) / name, dst / rel / name)


def _errors(at) -> list[str]:
    return [e.value for e in at.error] + [e.value for e in at.sidebar.get("error")]


def test_no_page_opens_a_symlinked_file_outside_the_root(deep_root, tmp_path, monkeypatch, opened):
    """demo's model files are real; every analysis file, its metrics and the corpus link to a copy outside."""
    from apps.runs_root import RUNS_ENV

    outside, root = tmp_path / "outside", tmp_path / "runs"
    shutil.copytree(deep_root, outside, symlinks=True)
    model_files = {"config.json", "model.safetensors", "tokenizer.json"}
    _mirror(outside / "demo", root / "demo", keep=model_files)
    _mirror(outside / "corpus", root / "corpus", keep=set())
    monkeypatch.setenv(RUNS_ENV, str(root))
    opened.clear()
    refused = {}
    for page in PAGE_NAMES:
        at = open_page(page, run="demo")
        assert not at.exception, (page, [e.value for e in at.exception])
        refused[page] = [e for e in _errors(at) if "outside the runs root" in e]
        assert all("\n" not in e and "Traceback" not in e for e in _errors(at)), (page, _errors(at))
    assert not _outside(opened, outside), _outside(opened, outside)
    for page in ("neurons", "neuron_table", "dictionaries", "features", "feature_table", "heads", "emergence", "compare",
                 "grades"):
        assert refused[page], f"{page}: no one-line refusal"
    assert any("metrics.jsonl" in e for e in refused["runs"]), refused["runs"]


def test_symlinked_weights_are_not_loaded(runs_root, tmp_path, monkeypatch, opened):
    from apps.runs_root import RUNS_ENV

    outside, root = tmp_path / "outside", tmp_path / "runs"
    shutil.copytree(runs_root / "demo", outside / "demo")
    _mirror(outside / "demo", root / "demo", keep={"config.json", "tokenizer.json", "metrics.jsonl"})
    monkeypatch.setenv(RUNS_ENV, str(root))
    opened.clear()
    at = open_page("generate", run="demo")
    (error,) = [e for e in _errors(at) if "outside the runs root" in e]
    assert "model.safetensors" in error and not at.get("html")  # no story from the outside weights
    assert not _outside(opened, outside)


def test_symlinked_explanations_file_is_refused(deep_root, tmp_path, monkeypatch, opened):
    """The case of the report: ``analysis/explanations/x.jsonl`` -> a file outside the root."""
    from apps.runs_root import RUNS_ENV

    root = tmp_path / "runs"
    shutil.copytree(deep_root, root, symlinks=True)
    secret = tmp_path / "secret.jsonl"
    secret.write_text(json.dumps({"id": "L0N0", "layer": 0, "neuron": 0, "explanation": "SECRET-TEXT", "score": 0.9,
                                  "status": "ok"}) + "\n")
    folder = root / "demo" / "analysis" / "explanations"
    os.symlink(secret, folder / "llm-secret.jsonl")
    monkeypatch.setenv(RUNS_ENV, str(root))
    opened.clear()
    for page in ("neuron_table", "neurons"):
        at = open_page(page, run="demo", layer=0, neuron=0)
        assert not at.exception
        assert any("llm-secret.jsonl" in e and "outside the runs root" in e for e in _errors(at)), _errors(at)
        shown = page_text(at) + "".join(str(d.value.to_dict()) for d in at.dataframe)
        assert "SECRET-TEXT" not in shown
    assert str(secret) not in opened


def _secret_run(where: Path) -> None:
    where.mkdir(parents=True)
    (where / "metrics.jsonl").write_text("".join(
        json.dumps({"step": k, "tokens": 1000 * k, "flops": 1e9 * k, "val_loss": SECRET_LOSS}) + "\n" for k in (1, 2, 3)))


@pytest.mark.parametrize("name", ["../../outside/secret_run", "linked", "/abs/secret_run", "linked/../../outside/secret_run"])
def test_sweep_run_names_cannot_leave_the_root(tmp_path, monkeypatch, opened, name):
    """A run name inside sweep_summary.json (``..``, absolute, or a symlinked folder) is refused, not plotted."""
    from apps.runs_root import RUNS_ENV
    from tests.support.synthetic_sweep import make_sweep

    root = tmp_path / "runs"
    sweep = make_sweep(root / "sweep", widths=(16, 64, 256), budgets=(1e11, 1e12))
    _secret_run(tmp_path / "outside" / "secret_run")
    os.symlink(tmp_path / "outside" / "secret_run", sweep / "linked")
    summary = json.loads((sweep / "sweep_summary.json").read_text())
    summary["runs"].append({**summary["runs"][0], "name": name.replace("/abs", str(tmp_path / "outside"))})
    (sweep / "sweep_summary.json").write_text(json.dumps(summary))
    monkeypatch.setenv(RUNS_ENV, str(root))
    opened.clear()
    at = open_page("scaling")
    assert not at.exception
    (error,) = _errors(at)
    assert "sweep_summary.json" in error and "runs root" in error
    assert not at.dataframe and not at.get("image")  # nothing of the sweep drawn from an outside run
    assert not _outside(opened, tmp_path / "outside")


def test_symlink_loop_run_is_one_line_on_every_page(runs_root, tmp_path, monkeypatch):
    """``runs/loop -> runs/loop`` and ``?run=loop``: a refusal in the sidebar, never a traceback."""
    from apps.runs_root import RUNS_ENV, PathOutsideRoot, RunsRoot

    root = tmp_path / "runs"
    shutil.copytree(runs_root, root, symlinks=True)
    os.symlink("loop", root / "loop")
    os.symlink("loop_b", root / "loop_a")
    os.symlink("loop_a", root / "loop_b")
    assert RunsRoot.open(root).list_runs() == ["baseline", "demo"]
    with pytest.raises(PathOutsideRoot, match="symlink loop"):
        RunsRoot.open(root).resolve_run("loop")
    monkeypatch.setenv(RUNS_ENV, str(root))
    for name in ("loop", "loop_a"):
        for page in PAGE_NAMES:
            at = open_page(page, run=name)
            assert not at.exception, (page, [e.value for e in at.exception])
            sidebar = [e.value for e in at.sidebar.get("error")]
            assert sidebar and "symlink loop" in sidebar[0] and str(tmp_path) not in sidebar[0], sidebar


def test_resolve_in_root_refuses_links_out_and_loops(tmp_path, monkeypatch):
    from apps.runs_root import RUNS_ENV, PathOutsideRoot, confine_folder, open_in_root, resolve_in_root

    root = tmp_path / "runs"
    (root / "run" / "sub").mkdir(parents=True)
    (root / "run" / "ok.json").write_text("{}")
    (tmp_path / "secret").write_text("s")
    os.symlink(tmp_path / "secret", root / "run" / "sub" / "out.json")
    os.symlink("self", root / "run" / "self")
    monkeypatch.setenv(RUNS_ENV, str(root))
    assert resolve_in_root(root / "run" / "ok.json") == (root / "run" / "ok.json").resolve()
    with open_in_root(root / "run" / "ok.json", "r") as f:
        assert f.read() == "{}"
    for bad, reason in ((root / "run" / "sub" / "out.json", "outside the runs root"),
                        (root / "run" / "self", "symlink loop"), (root / ".." / "secret", "outside the runs root")):
        with pytest.raises(PathOutsideRoot, match=reason) as e:
            resolve_in_root(bad)
        assert "\n" not in str(e.value)
    with pytest.raises(PathOutsideRoot, match="self"):
        confine_folder(root / "run")  # the folder's own files: the loop
    (root / "run" / "self").unlink()
    confine_folder(root / "run")  # the link out sits one level down: a flat check passes…
    with pytest.raises(PathOutsideRoot, match="out.json"):
        confine_folder(root / "run", recursive=True)  # …a recursive one (folders read as a whole) does not
