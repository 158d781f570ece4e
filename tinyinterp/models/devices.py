"""Device names given by users (``--device``, ``tinyinterp.load(device=...)``), refused in one line when
this machine cannot run them — instead of a CUDA traceback from deep inside torch."""

from __future__ import annotations

import torch

from tinyinterp.errors import TinyinterpError


def resolve_device(name: str) -> torch.device:
    """``--device`` as a torch device, refusing one this machine cannot run on (one line, not a traceback)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise TinyinterpError(f"--device {name!r}: not a device name; use cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch build has no CUDA support" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise TinyinterpError(f"--device {name}: {why}; use --device cpu (or auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise TinyinterpError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) visible")
    elif device.type != "cpu":
        backend = getattr(torch.backends, device.type, None)
        if backend is None or not getattr(backend, "is_available", lambda: False)():
            raise TinyinterpError(f"--device {name}: not available on this machine; use --device cpu (or auto)")
    return device
