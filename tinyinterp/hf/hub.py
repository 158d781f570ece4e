"""Everything that talks to the Hugging Face Hub, in one place: is it reachable, is a name in the local
cache, resolve a name or folder for the loaders, download a model. Every network call is bounded in time,
so an offline machine — or an endpoint that accepts the connection and never answers — fails in
seconds with one line instead of hanging in the hub client's retries.

``datasets``/``huggingface_hub`` retry a failed request with back-off (about 25 s for a hub dataset when
DNS fails) and have no overall timeout for metadata calls; callers ask :func:`hub_reachable` first.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

from tinyinterp.errors import ModelLoadError

log = logging.getLogger(__name__)

_FALSY = ("", "0", "false", "no", "off")
PROBE_TIMEOUT_S = 3.0
"""Seconds the hub endpoint has to answer one HTTP request before it counts as unreachable."""
CALL_TIMEOUT_S = 30.0
"""Seconds one metadata call (listing a repo's files) may take."""


def offline_mode() -> bool:
    """True when the user asked the HF libraries to stay offline (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE)."""
    return any(os.environ.get(name, "").strip().lower() not in _FALSY for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hub_problem(timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Why the hub cannot be used now (offline mode, no connection, no answer within ``timeout``), or
    ``None``. An HTTP answer of any status counts: the server is there and talking."""
    if offline_mode():
        return "offline mode (HF_HUB_OFFLINE)"
    url = endpoint()
    if urlparse(url).scheme not in ("http", "https"):
        return f"HF_ENDPOINT {url!r} is not an http(s) URL"
    try:
        with urllib.request.urlopen(urllib.request.Request(url + "/api/models?limit=1", method="HEAD"), timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None
    except TimeoutError:
        return f"{url} did not answer within {timeout:g} s"
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        if isinstance(reason, TimeoutError):
            return f"{url} did not answer within {timeout:g} s"
        return f"no connection to {url}"


def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """The hub endpoint (``HF_ENDPOINT``, default huggingface.co) answers an HTTP request within ``timeout``."""
    return hub_problem(timeout) is None


def bounded(call: Callable[[], Any], what: str, timeout: float = CALL_TIMEOUT_S) -> Any:
    """``call()`` in a daemon thread, abandoned after ``timeout`` seconds with one line naming ``what``
    (the hub client has no overall timeout of its own for metadata calls)."""
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = call()
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            result["error"] = e

    worker = threading.Thread(target=run, name=f"hub: {what}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise ModelLoadError(f"{what}: the Hugging Face Hub at {endpoint()} did not answer within {timeout:g} s")
    if "error" in result:
        e = result["error"]
        raise ModelLoadError(f"{what}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    return result.get("value")


def is_hf_model_dir(path: Path) -> bool:
    """A local folder saved by ``save_pretrained`` (config.json with a ``model_type``)."""
    config = Path(path) / "config.json"
    try:
        return config.is_file() and "model_type" in json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError, TypeError):
        return False


def cached_snapshot(name: str) -> Path | None:
    """The local hub-cache folder of ``name`` if it was downloaded before, else None."""
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(name, "config.json")
    except Exception:  # noqa: BLE001 - any failure just means "not cached"
        return None
    return Path(hit).parent if isinstance(hit, str) else None


def broken_link_message(path: Path) -> str | None:
    """What is wrong with ``path`` if it is (or passes through) a symbolic link that loops, or is a link
    that points nowhere; else ``None``. ``Path.exists`` answers False for both, which would make them
    look like hub names."""
    loop = f"{path}: a symbolic link that loops (it leads back to itself); point it at a model folder"
    try:
        path.resolve(strict=True)
    except RuntimeError:  # Python 3.11 reports a loop this way
        return loop
    except OSError as e:
        if e.errno == errno.ELOOP:
            return loop
        if os.path.islink(path):
            return f"{path}: a symbolic link to {os.readlink(path)}, which does not exist"
    return None


def resolve(name_or_path: str) -> Path | str:
    """A local folder for ``name_or_path``, or the hub name when the hub answers."""
    path = Path(name_or_path).expanduser()
    broken = broken_link_message(path)
    if broken:
        raise ModelLoadError(broken)
    if path.exists():
        if not is_hf_model_dir(path):
            raise ModelLoadError(
                f"{path}: not a tinyinterp run directory nor a Hugging Face model folder "
                "(expected config.json with model.safetensors, or a save_pretrained folder)"
            )
        return path
    problem = hub_problem()
    if problem is None:
        return name_or_path
    cached = cached_snapshot(name_or_path)
    if cached is not None:
        return cached
    raise ModelLoadError(
        f"could not download {name_or_path!r} from the Hugging Face Hub ({problem}); on a machine "
        f"with internet run `huggingface-cli download {name_or_path} --local-dir DIR`, copy DIR here "
        "and pass its path instead"
    )


def download(name: str) -> Path:
    """Download the files of hub model ``name`` that the native importer needs; returns the local folder.
    The file listing is bounded by :data:`CALL_TIMEOUT_S`, each download read by the hub client's
    ``HF_HUB_DOWNLOAD_TIMEOUT`` / ``etag_timeout``."""
    from huggingface_hub import list_repo_files, snapshot_download

    files = bounded(lambda: list_repo_files(name), f"listing the files of {name!r}")
    weights = ["*.safetensors"] if any(f.endswith(".safetensors") for f in files) else ["pytorch_model*.bin"]
    log.info("downloading %s from the Hugging Face Hub", name)
    try:
        return Path(snapshot_download(name, allow_patterns=["*.json", "*.txt", *weights], etag_timeout=PROBE_TIMEOUT_S * 3))
    except Exception as e:  # noqa: BLE001 - hub client errors come in many types; one line for all
        raise ModelLoadError(f"could not download {name!r}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


def resolve_local(name_or_path: str) -> Path:
    """Like :func:`resolve`, but always a local folder: a reachable hub name is downloaded
    (config, tokenizer and weight files only)."""
    source = resolve(name_or_path)
    return source if isinstance(source, Path) else download(source)
