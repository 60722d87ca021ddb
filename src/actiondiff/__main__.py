"""`python -m actiondiff` runs the command line."""

import sys

from actiondiff.cli import main

sys.exit(main())
