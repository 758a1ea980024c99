"""``python -m qstore.cli``: the ``qstore`` command without the console script."""

import sys

from . import main

sys.exit(main())
