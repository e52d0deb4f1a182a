"""``python -m bayes_ising.cli``."""

import sys

from bayes_ising.cli import main

sys.exit(main())
