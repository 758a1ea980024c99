"""``python -m qstore.ionq.server``: the same as ``qstore serve`` (what ``bench/server.py`` starts)."""

import sys

from ...cli.serve import main

sys.exit(main())
