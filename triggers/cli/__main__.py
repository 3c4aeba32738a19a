"""`python -m triggers.cli`: the same as the `triggers` command."""

import sys

from . import main

sys.exit(main())
