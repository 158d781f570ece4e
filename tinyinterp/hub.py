"""Can the Hugging Face Hub be reached? One quick answer, so offline machines fail in seconds, not after retries.

``datasets``/``huggingface_hub`` retry a failed request with back-off (about 25 s for a hub dataset
when DNS fails); callers ask :func:`hub_reachable` first and give a one-line error at once.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

from tinyinterp.envflags import env_flag

def offline_mode() -> bool:
    """True when the user asked the HF libraries to stay offline (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE)."""
    return env_flag("HF_HUB_OFFLINE") or env_flag("HF_DATASETS_OFFLINE")


def hub_reachable(timeout: float = 3.0) -> bool:
    """A TCP connection to the hub endpoint (``HF_ENDPOINT``, default huggingface.co) opens within ``timeout``."""
    if offline_mode():
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False
