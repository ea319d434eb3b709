"""`python -m etfcore.cli`: the `etfcore` command."""

import sys

from . import main

sys.exit(main())
