"""The app's runs root: the one folder it may read, the runs inside it, and the selected run.

Every path that comes from a widget or a query parameter is a path *relative to the runs root*;
:meth:`RunsRoot.resolve` refuses absolute paths, ``..`` parts, NUL bytes and anything that resolves
(symlinks followed) outside the root, so the app never reads a file the user did not put under
``--runs``. The root itself comes from the ``TINYINTERP_RUNS`` environment variable, which
``tinyinterp app --runs DIR`` sets for the Streamlit process (default ``./runs``).

    >>> root = RunsRoot.open("runs")
    >>> root.list_runs()            # ['demo', 'sweeps/lr3e-3', ...]
    >>> root.resolve("demo")        # absolute Path inside the root
    >>> root.resolve("../secrets")  # raises PathOutsideRoot
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from tinyinterp import rundir
from tinyinterp.errors import TinyinterpError

RUNS_ENV = "TINYINTERP_RUNS"
DEFAULT_RUNS = "runs"
MAX_DEPTH = 2
"""How deep below the root runs are looked for (``runs/demo``, ``runs/sweep/lr1``)."""
SKIP_DIRS = {rundir.ANALYSIS_DIR, rundir.CHECKPOINTS_DIR, "__pycache__"}


class PathOutsideRoot(TinyinterpError):
    """A requested path is absolute, climbs out of the runs root, or is not a run."""


def is_model_dir(path: Path) -> bool:
    """Our run directory, or a local Hugging Face model folder (``config.json`` with ``model_type``)."""
    from tinyinterp.external import is_hf_model_dir

    return rundir.is_run_dir(path) or is_hf_model_dir(path)


def is_training_dir(path: Path) -> bool:
    """A run being trained: ``metrics.jsonl`` or checkpoints, but no ``model.safetensors`` yet."""
    path = Path(path)
    has_progress = (path / rundir.METRICS_FILE).is_file() or (path / rundir.CHECKPOINTS_DIR).is_dir()
    return has_progress and not (path / rundir.WEIGHTS_FILE).is_file() and not is_model_dir(path)


def is_listed_run(path: Path) -> bool:
    """What the picker lists: finished runs, HF model folders, and runs still in training."""
    return is_model_dir(path) or is_training_dir(path)


@dataclass(frozen=True)
class RunsRoot:
    path: Path
    """Absolute, symlink-free path of the root."""

    @classmethod
    def open(cls, path: str | Path) -> "RunsRoot":
        resolved = Path(path).expanduser().resolve()
        if not resolved.is_dir():
            raise TinyinterpError(f"runs root {path}: not a directory; pass --runs DIR with your run directories")
        return cls(resolved)

    @classmethod
    def from_env(cls) -> "RunsRoot":
        return cls.open(os.environ.get(RUNS_ENV) or DEFAULT_RUNS)

    def resolve(self, relative: str) -> Path:
        """The absolute path of ``relative`` (POSIX, relative to the root); refuses anything outside it."""
        if not isinstance(relative, str) or not relative.strip() or "\x00" in relative:
            raise PathOutsideRoot(f"run {relative!r}: expected a path relative to the runs root, e.g. 'demo'")
        parts = PurePosixPath(relative.replace("\\", "/"))
        if parts.is_absolute() or PureWindowsPath(relative).drive or ".." in parts.parts:
            raise PathOutsideRoot(f"run {relative!r}: refused, paths must stay inside the runs root {self.path}")
        resolved = (self.path / parts).resolve()
        if not resolved.is_relative_to(self.path):  # e.g. a symlink inside the root pointing out of it
            raise PathOutsideRoot(f"run {relative!r}: refused, it resolves outside the runs root {self.path}")
        return resolved

    def contains(self, path: Path) -> bool:
        """Whether ``path`` (symlinks followed) lies inside the root: for paths read from data files."""
        return Path(path).resolve().is_relative_to(self.path)

    def relative(self, path: Path) -> str:
        return Path(path).resolve().relative_to(self.path).as_posix() or "."

    def resolve_run(self, relative: str) -> Path:
        """Like :meth:`resolve`, and the path must be a run (or HF model, or in-training) directory."""
        path = self.resolve(relative)
        if not path.is_dir() or not is_listed_run(path):
            raise PathOutsideRoot(f"run {relative!r}: not a run directory under {self.path}")
        return path

    def list_runs(self, max_depth: int = MAX_DEPTH) -> list[str]:
        """Relative paths of the run / model directories under the root (the root itself if it is one)."""
        if is_listed_run(self.path):
            return ["."]
        found: list[str] = []

        def walk(folder: Path, depth: int) -> None:
            try:
                children = sorted(p for p in folder.iterdir() if p.is_dir())
            except OSError:
                return
            for child in children:
                if child.name.startswith(".") or child.name in SKIP_DIRS:
                    continue
                if not child.resolve().is_relative_to(self.path):
                    continue  # a symlink out of the root is never listed
                if is_listed_run(child):
                    found.append(child.relative_to(self.path).as_posix())
                elif depth < max_depth:
                    walk(child, depth + 1)

        walk(self.path, 1)
        return found


def checked_int(value, low: int, high: int) -> int | None:
    """``int(value)`` if it parses and lies in ``[low, high]``, else None (for query parameters)."""
    try:
        number = int(str(value))
    except (TypeError, ValueError):
        return None
    return number if low <= number <= high else None
