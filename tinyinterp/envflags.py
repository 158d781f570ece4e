"""Boolean environment flags (``CI``, ``TINYINTERP_NO_SERVE``, ``HF_HUB_OFFLINE``): one rule for all of them."""

from __future__ import annotations

import os

FALSE_WORDS = ("", "0", "false", "no", "off")
"""Values (case and surrounding spaces ignored) that turn a flag off; any other value turns it on."""


def env_flag(name: str) -> bool:
    """Is the boolean environment variable ``name`` on? Unset or one of :data:`FALSE_WORDS` is off.

    CI systems set ``CI=true``, ``CI=1`` or their own name (``CI=woodpecker``): all mean on, while
    ``CI=off`` or ``CI=0`` means off — for the demo, the app and the hub check alike.
    """
    return os.environ.get(name, "").strip().lower() not in FALSE_WORDS
