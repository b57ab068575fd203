"""``python -m colonymesh.simulations SCENARIO ...``: the same as ``colonymesh simulate``."""

import sys

from colonymesh.simulations.cli import main

sys.exit(main(prog="python -m colonymesh.simulations"))
