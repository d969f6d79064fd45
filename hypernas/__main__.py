"""``python -m hypernas`` is the ``hypernas`` command."""

import sys

from .cli import main

sys.exit(main())
