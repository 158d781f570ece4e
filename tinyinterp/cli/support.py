"""What every tinyinterp command line shares: the one-line ``error: …`` exit path.

A :class:`~tinyinterp.errors.TinyinterpError` is a problem the user can fix, so a CLI prints it as one
line ``error: <msg>`` on stderr and exits with code 2 (no traceback). Every ``main(argv)`` in the
project goes through :func:`run_cli`:

    def main(argv=None) -> int:
        args = parser.parse_args(argv)
        return run_cli(lambda: work(args))

No heavy imports: ``tinyinterp --help`` must stay fast.
"""

from __future__ import annotations

import sys
from typing import Callable

from tinyinterp.errors import TinyinterpError

EXIT_USER_ERROR = 2


def print_error(error: BaseException | str) -> None:
    """The one line a CLI prints for a user error (newlines folded, so it stays one line)."""
    text = " ".join(str(error).split("\n"))
    print(f"error: {text}", file=sys.stderr)


def run_cli(work: Callable[[], int | None], also_catch: tuple[type[BaseException], ...] = ()) -> int:
    """Run ``work`` and return its exit code (``None`` → 0); user errors become one line and code 2.

    ``also_catch``: further exception types that mean bad input for this program (e.g. ``ValueError``
    from a figure script's own parsing).
    """
    try:
        return int(work() or 0)
    except (TinyinterpError, *also_catch) as e:
        print_error(e)
        return EXIT_USER_ERROR

