"""One-line messages instead of tracebacks: a broken file breaks its own panel, never the page.

A run folder is data someone else wrote: a torn ``metrics.jsonl``, a half-copied ``index.safetensors``,
a ``heads.json`` from an older version, weights truncated by a full disk. Every read of such a file in
the pages goes through :func:`attempt` (a value, or None after an ``st.error`` line) or the
:func:`panel` context manager (the rest of the ``with`` block is skipped, the page goes on). The full
traceback goes to the server log, where the person running ``tinyinterp app`` can read it.

Streamlit's own control flow (``st.stop``, reruns) derives from ``BaseException`` and passes through.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

import streamlit as st

from apps.render import md_text
from tinyinterp.errors import TinyinterpError

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_CHARS = 300


def one_line(error: BaseException) -> str:
    """The error as one short line: our own messages as they are, others prefixed with their type."""
    text = " ".join(str(error).split()) or "(no message)"
    if not isinstance(error, TinyinterpError):
        text = f"{type(error).__name__}: {text}"
    return text if len(text) <= MAX_CHARS else text[: MAX_CHARS - 1] + "…"


def show(what: str, error: BaseException) -> None:
    log.warning("%s: %s", what, error, exc_info=error)
    # Messages quote file names and values from data files: shown as text, never as Markdown (no images, links)
    st.error(f"{md_text(what)}: {md_text(one_line(error))}")


def attempt(what: str, fn: Callable[..., T], *args, **kwargs) -> T | None:
    """``fn(*args, **kwargs)``, or None after showing ``what: <one line>`` when it raises."""
    try:
        return fn(*args, **kwargs)
    except Exception as e:  # any broken file: the message names it, the page goes on
        show(what, e)
        return None


@contextmanager
def panel(what: str) -> Iterator[None]:
    """``with panel("top examples"): ...``: an error ends this block with one line, not the page."""
    try:
        yield
    except Exception as e:
        show(what, e)
