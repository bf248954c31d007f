"""``python -m bayesym.cli`` runs the same command line as the ``bayesym`` script."""

import sys

from bayesym.cli import main

if __name__ == "__main__":
    sys.exit(main())
