"""``python -m xcam``: the command line (the program's entry point; nothing in the core imports it)."""

import sys

from xcam.app.cli import main

sys.exit(main())
