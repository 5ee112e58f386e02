"""``python -m runtime config.toml`` is ``botrun config.toml``."""

import sys

from .cli import main

sys.exit(main())
