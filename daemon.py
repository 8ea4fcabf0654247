"""Run the leadflow daemon: ``python daemon.py`` is ``leadflow daemon``."""

import sys

from leadflow.cli import main

if __name__ == "__main__":
    sys.exit(main(["daemon", *sys.argv[1:]]))
