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

Paths read from *data files* (a run name inside ``sweep_summary.json``, the corpus in ``meta.json``) and
the files of a run themselves (any of which may be a symlink) go through :func:`resolve_in_root` before
anything opens them: every loader of the app (``apps.loaders``, ``apps.queries``, the pages' own
``st.cache_data`` readers) reaches a file only through it, :func:`confine_folder` (every file in a folder
a library loader reads as a whole) or :func:`open_in_root`. A symlink out of the root, a ``..`` name or a
symlink loop is refused with one line naming the file relative to the root.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import IO
from pathlib import Path, PurePosixPath, PureWindowsPath

from tinyinterp.runs import rundir
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
    from tinyinterp.hf.hub import is_hf_model_dir

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
        resolved = _resolved(self.path / parts)
        if resolved is None:
            raise PathOutsideRoot(f"run {relative!r}: refused, it cannot be resolved (a symlink loop?)")
        if not resolved.is_relative_to(self.path):  # e.g. a symlink inside the root pointing out of it
            raise PathOutsideRoot(f"run {relative!r}: refused, it resolves outside the runs root {self.path}")
        return resolved

    def contains(self, path: Path) -> bool:
        """Whether ``path`` (symlinks followed) lies inside the root: for paths read from data files."""
        resolved = _resolved(path)
        return resolved is not None and resolved.is_relative_to(self.path)

    def shown(self, path: Path) -> str:
        """``path`` as the user sees it: relative to the root when it lies (lexically) inside it."""
        path = Path(path)
        return path.relative_to(self.path).as_posix() if path.is_relative_to(self.path) else path.name

    def resolve_in(self, path: Path) -> Path:
        """``path`` with symlinks resolved, if it lies inside the root; else one-line :class:`PathOutsideRoot`."""
        resolved = _resolved(path)
        if resolved is None:
            raise PathOutsideRoot(f"{self.shown(path)}: cannot be resolved (a symlink loop?); the app refuses it")
        if not resolved.is_relative_to(self.path):
            raise PathOutsideRoot(f"{self.shown(path)}: resolves outside the runs root {self.path}; "
                                  "the app reads only inside it (replace the link by the file itself)")
        return resolved

    def relative(self, path: Path) -> str:
        return Path(path).resolve().relative_to(self.path).as_posix() or "."

    def resolve_run(self, relative: str) -> Path:
        """Like :meth:`resolve`, and the path must be a run (or HF model, or in-training) directory."""
        path = self.resolve(relative)
        self.resolve_in(path / rundir.CONFIG_FILE)  # is_listed_run reads it: only inside the root
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
                if not self.contains(child) or not self.contains(child / rundir.CONFIG_FILE):
                    continue  # a symlink out of the root (or a loop) is never listed, nor read to tell what it is
                if is_listed_run(child):
                    found.append(child.relative_to(self.path).as_posix())
                elif depth < max_depth:
                    walk(child, depth + 1)

        walk(self.path, 1)
        return found


def _resolved(path: Path) -> Path | None:
    """``path`` with every symlink followed (None for a symlink loop or an unreadable path)."""
    try:
        return Path(path).resolve()
    except (RuntimeError, OSError, ValueError):  # Python 3.11 raises RuntimeError on a loop
        return None


def active_root() -> RunsRoot:
    """The runs root of this app process (``TINYINTERP_RUNS``)."""
    return RunsRoot.from_env()


def resolve_in_root(path: str | Path) -> Path:
    """The one gate before the app opens a file: ``path`` resolved, refused unless inside the runs root."""
    return active_root().resolve_in(Path(path))


def confine_folder(folder: str | Path, recursive: bool = False) -> Path:
    """``folder`` resolved inside the root, after checking every file in it (and below, if ``recursive``)
    does too: for library loaders that open a folder's files themselves (``NeuronIndex.load``, a model)."""
    root = active_root()
    resolved = root.resolve_in(Path(folder))
    if resolved.is_dir():
        for where, dirs, files in os.walk(resolved):  # symlinked folders are checked, never walked into
            for name in (*dirs, *files):
                root.resolve_in(Path(where) / name)
            if not recursive:
                break
    return resolved


def open_in_root(path: str | Path, mode: str = "rb") -> IO:
    """``open`` of a file after :func:`resolve_in_root` accepted it."""
    return open(resolve_in_root(path), mode, **({} if "b" in mode else {"encoding": "utf-8"}))


def checked_int(value, low: int, high: int) -> int | None:
    """``int(value)`` if it parses and lies in ``[low, high]``, else None (for query parameters)."""
    try:
        number = int(str(value))
    except (TypeError, ValueError):
        return None
    return number if low <= number <= high else None
