"""``python -m tinyinterp.cli``: the ``tinyinterp`` console script."""

import sys

from tinyinterp.cli import main

sys.exit(main())
