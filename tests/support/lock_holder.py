"""A second process that holds a run directory's lock, for the lock tests (it prints "locked" once it has it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
_HOLD = (
    "import sys, time\n"
    "from tinyinterp.runs.lock import lock_run_dir\n"
    "with lock_run_dir(sys.argv[1]):\n"
    "    print('locked', flush=True)\n"
    "    time.sleep(600)\n"
)


def start_lock_holder(run_dir: Path) -> subprocess.Popen:
    """Start the holder on ``run_dir``; read one line of its stdout to know it holds the lock; kill it when done."""
    return subprocess.Popen([sys.executable, "-c", _HOLD, str(run_dir)], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
