"""``python -m training.sweep``: the command line of earlier releases, kept so old scripts keep working.

It was two programs chosen by the first argument, and still forwards the same way: ``run``, ``list`` and
``summarize`` go to the scaling sweep (:mod:`training.scaling_sweep`, also ``tinyinterp sweep``), anything
else to the preset x lr grid sweep (:mod:`training.grid_sweep`). New scripts call those two directly.
"""

from __future__ import annotations

import sys

SCALING_COMMANDS = ("run", "list", "summarize")
"""First arguments that belong to the scaling sweep."""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in SCALING_COMMANDS:
        from training.scaling_sweep import main as scaling_main

        return scaling_main(argv, prog="python -m training.sweep")
    from training.grid_sweep import main as grid_main

    return grid_main(argv, prog="python -m training.sweep")


if __name__ == "__main__":
    sys.exit(main())
