"""`python -m facerec.cli` (used by torchrun, which starts a module rather than the `facerec` script)."""

import sys

from facerec.cli import main

sys.exit(main())
