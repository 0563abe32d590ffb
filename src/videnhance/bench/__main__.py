"""`python -m videnhance.bench …` (also how a measurement runs in a fresh process: `_work`)."""

import sys

from .cli import main

sys.exit(main())
