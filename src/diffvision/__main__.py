"""``python -m diffvision`` (and ``torchrun -m diffvision``) runs the command line."""

import sys

from .cli import main

sys.exit(main())
