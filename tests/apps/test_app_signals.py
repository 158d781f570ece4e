"""Stopping `tinyinterp app` with SIGTERM (a service manager, `kill PID`) stops its streamlit server too."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from apps.cli import NO_SERVE_ENV, port_free, wait_healthy

REPO_ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_sigterm_to_the_app_stops_its_streamlit_child(tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("CI", NO_SERVE_ENV)}
    # Own process group, so the cleanup below can reach an orphaned server even when the test fails.
    proc = subprocess.Popen([sys.executable, "-m", "apps.cli", "--runs", str(tmp_path), "--port", str(port), "--no-browser"],
                            cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        assert wait_healthy("127.0.0.1", port, timeout=120, process=proc), proc.stderr.read().decode()[-2000:]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        deadline = time.monotonic() + 15
        while not port_free("127.0.0.1", port) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert port_free("127.0.0.1", port), "the streamlit child still serves the port"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)
        proc.stderr.close()
