"""`python -m feedback_db export|leaderboard|upgrade ...` (see cli.py)."""

import sys

from .cli import main

sys.exit(main())
