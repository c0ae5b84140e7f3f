"""``python -m antigravity_gw accounts ...``: see ``cli.py``."""

import sys

from .cli import main

sys.exit(main())
