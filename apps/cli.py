"""``tinyinterp app``: serve the Streamlit app on this machine, or only check that every page renders.

Serving runs ``streamlit run apps/app.py`` headless on ``--host``/``--port`` with usage statistics off
(so the browser makes no request beyond this machine) and the runs root passed in ``TINYINTERP_RUNS``.
``--check`` (or ``TINYINTERP_NO_SERVE=1``, or ``CI=true``) renders every page once in-process with
Streamlit's ``AppTest``, scans what they render for network references, prints the URL the app
would be served at, and exits: that is how ``make demo`` ends in CI.

    $ tinyinterp app --runs runs                 # http://127.0.0.1:8501, opens a browser tab
    $ tinyinterp app --runs runs --check         # render all pages once, print the URL, exit
"""

from __future__ import annotations

import argparse
import ctypes  # imported here, not in the forked child, where taking the import lock could deadlock
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from tinyinterp.cli.commands import Command
from tinyinterp.envflags import env_flag
from tinyinterp.errors import TinyinterpError

APP_FILE = Path(__file__).resolve().parent / "app.py"
NO_SERVE_ENV = "TINYINTERP_NO_SERVE"
DEFAULT_PORT = 8501


def serving_disabled() -> bool:
    """True when the environment asks for ``--check`` behaviour (CI, or TINYINTERP_NO_SERVE=1)."""
    return env_flag(NO_SERVE_ENV) or env_flag("CI")


def streamlit_command(port: int, host: str = "127.0.0.1") -> list[str]:
    """The ``streamlit run`` command line: headless, local only, no usage statistics, no file watcher."""
    return [
        sys.executable, "-m", "streamlit", "run", str(APP_FILE),
        "--server.headless", "true", "--server.address", host, "--server.port", str(port),
        "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
        "--global.developmentMode", "false", "--client.toolbarMode", "viewer",
    ]


def streamlit_env(runs_root: Path) -> dict[str, str]:
    from apps.runs_root import RUNS_ENV

    return {**os.environ, RUNS_ENV: str(runs_root), "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}


def app_url(host: str, port: int, run: str | None = None) -> str:
    shown = "localhost" if host in ("127.0.0.1", "0.0.0.0") else host
    return f"http://{shown}:{port}/" + (f"?run={run}" if run else "")


def port_free(host: str, port: int) -> bool:
    """Nothing listens on ``host:port``. SO_REUSEADDR as the server itself uses: connections of a server
    that just stopped linger in TIME_WAIT for a minute, and must not count as "in use"."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def wait_healthy(host: str, port: int, timeout: float = 60.0, process: subprocess.Popen | None = None) -> bool:
    """Poll ``/_stcore/health`` until it answers ``ok`` (False on timeout or if the server exits)."""
    url = f"http://{host}:{port}/_stcore/health"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.25)
    return False


def check_pages(runs_root: Path, run: str | None = None, timeout: float = 120.0) -> list[str]:
    """Render every page once with ``AppTest``; returns one line per problem (empty = all pages fine)."""
    from streamlit.testing.v1 import AppTest

    from apps.views import PAGE_NAMES
    from apps.render import network_references
    from apps.runs_root import RUNS_ENV

    problems = []
    old = os.environ.get(RUNS_ENV)
    os.environ[RUNS_ENV] = str(runs_root)
    try:
        at = AppTest.from_file(str(APP_FILE), default_timeout=timeout)
        if run:
            at.query_params["run"] = run
        at.run()
        for name in PAGE_NAMES:
            at.switch_page(f"views/{name}.py").run()
            problems += [f"{name}: {e.message}" for e in at.exception]
            markup = [e.proto.srcdoc for e in at.get("iframe")] + [e.proto.body for e in at.get("html")]
            problems += [f"{name}: network reference {ref}" for m in markup for ref in network_references(m)]
    finally:
        if old is None:
            os.environ.pop(RUNS_ENV, None)
        else:
            os.environ[RUNS_ENV] = old
    return problems


def _open_browser_when_ready(host: str, port: int, url: str, process: subprocess.Popen) -> None:
    def opener() -> None:
        if wait_healthy(host, port, process=process):
            import webbrowser

            webbrowser.open(url)

    threading.Thread(target=opener, daemon=True).start()


def run_app(args: argparse.Namespace) -> int:
    from apps.runs_root import RunsRoot

    root = RunsRoot.open(args.runs)
    runs = root.list_runs()
    if args.run is not None:
        root.resolve_run(args.run)  # refuses paths outside the root with a one-line error
    url = app_url(args.host, args.port, args.run)
    if args.check or serving_disabled():
        why = "--check" if args.check else f"{NO_SERVE_ENV}/CI set"
        print(f"app: checking {len(runs)} run(s) under {root.path} without serving ({why})")
        problems = check_pages(root.path, args.run)
        for line in problems:
            print(f"app: {line}", file=sys.stderr)
        if problems:
            return 1
        print(f"app: every page rendered; serve it with `tinyinterp app --runs {args.runs}` -> {url}")
        return 0
    if not port_free(args.host, args.port):
        raise TinyinterpError(f"--port {args.port}: already in use on {args.host}; pass another --port")
    print(f"app: serving {len(runs)} run(s) under {root.path} at {url} (Ctrl-C to stop)", flush=True)
    process = subprocess.Popen(streamlit_command(args.port, args.host), env=streamlit_env(root.path),
                               preexec_fn=_die_with_parent if sys.platform == "linux" else None)
    if not args.no_browser:
        _open_browser_when_ready(args.host, args.port, url, process)
    # SIGTERM/SIGHUP (a service manager, `kill`, a closed terminal) must stop the server too, not
    # only Ctrl-C: raise in the main thread so the `finally` below stops the child.
    in_main_thread = threading.current_thread() is threading.main_thread()  # signal handlers live there only
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGTERM, signal.SIGHUP)} if in_main_thread else {}
    try:
        return process.wait()
    except (KeyboardInterrupt, _StopRequested):
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _stop_child(process)


class _StopRequested(Exception):
    """SIGTERM or SIGHUP arrived while serving."""


def _raise_stop(signum, frame) -> None:
    raise _StopRequested(signal.Signals(signum).name)


def _stop_child(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """Terminate the streamlit child (SIGTERM, then SIGKILL after ``timeout``) and reap it."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGTERM it when this process dies, even by SIGKILL."""
    PR_SET_PDEATHSIG = 1
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", default="runs", metavar="DIR",
                   help="runs root: the folder holding run directories; the app reads nothing outside it (default ./runs)")
    p.add_argument("--run", default=None, metavar="NAME", help="run to open first, relative to --runs (e.g. demo)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port to serve on (default {DEFAULT_PORT})")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 exposes it)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser tab once the server is up")
    p.add_argument("--check", action="store_true",
                   help=f"render every page once without serving, print the URL and exit (also {NO_SERVE_ENV}=1 or CI=true)")


COMMAND = Command("app", "browse runs, neurons, heads and generations in a local web app", "apps.cli:add_subparser")
"""``tinyinterp app``: the ``tinyinterp.commands`` entry point (pyproject.toml)."""


def add_subparser(subparsers) -> None:
    p = subparsers.add_parser(
        COMMAND.name, help=COMMAND.help,
        description="Serve the tinyinterp Streamlit app (offline, local only) over the runs in --runs.",
    )
    add_arguments(p)
    p.set_defaults(func=run_app)


def main(argv: list[str] | None = None) -> int:
    """``tinyinterp app ...`` on its own (tests call ``main(["--runs", DIR, "--check"])``)."""
    from tinyinterp.cli import main as cli_main

    return cli_main(["app", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
