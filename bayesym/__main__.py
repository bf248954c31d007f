"""``python -m bayesym`` (and ``torchrun -m bayesym``) runs the ``bayesym`` command line."""

import sys

from bayesym.cli import main

if __name__ == "__main__":
    sys.exit(main())
