"""Code blocks of the README, so tests can run its snippets exactly as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def python_block(containing: str) -> str:
    """The one ```python block of README.md that contains ``containing``."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)
    hits = [b for b in blocks if containing in b]
    assert len(hits) == 1, f"README.md: expected one python block containing {containing!r}, found {len(hits)}"
    return hits[0]
