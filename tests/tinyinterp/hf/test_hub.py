"""Hub resolution (tinyinterp.hf.hub): every hub call is bounded in time, and local paths that only look
missing (symbolic-link loops) are named for what they are, not taken for hub names."""

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import tinyinterp
from tinyinterp.errors import ModelLoadError

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def silent_endpoint():
    """A TCP server on 127.0.0.1 that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held, stop = [], threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_silent_hub_endpoint_fails_the_cli_in_one_line(silent_endpoint, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT=silent_endpoint, HF_HOME=str(tmp_path / "hf-home"))
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "tinyinterp.cli", "generate", "roneneldan/TinyStories-1M", "Once", "--max-new-tokens", "2"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    elapsed = time.monotonic() - start
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(err) == 1 and err[0].startswith("error: ") and "did not answer" in err[0], proc.stderr[-2000:]
    assert elapsed < 60


def test_bounded_abandons_a_call_that_never_returns():
    from tinyinterp.hf.hub import bounded

    start = time.monotonic()
    with pytest.raises(ModelLoadError, match="listing the files of 'x/y'.*did not answer within 0.5 s"):
        bounded(lambda: time.sleep(30), "listing the files of 'x/y'", timeout=0.5)
    assert time.monotonic() - start < 5
    with pytest.raises(ModelLoadError, match="^boom: no such repo$"):
        bounded(lambda: (_ for _ in ()).throw(RuntimeError("no such repo\ntraceback noise")), "boom")
    assert bounded(lambda: 42, "fine") == 42


@pytest.mark.parametrize("name", ["loop", "owner/loop"])
def test_a_symlink_loop_is_named_as_one(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    link = Path(name)
    link.parent.mkdir(exist_ok=True)
    os.symlink(link.name, link)  # points at itself
    with pytest.raises(ModelLoadError, match="symbolic link that loops") as info:
        tinyinterp.load(name)
    assert "hub" not in str(info.value)


def test_a_dangling_symlink_is_named_as_one(tmp_path):
    link = tmp_path / "gone"
    os.symlink(tmp_path / "nowhere", link)
    with pytest.raises(ModelLoadError, match="symbolic link to .*nowhere, which does not exist"):
        tinyinterp.load(link)
