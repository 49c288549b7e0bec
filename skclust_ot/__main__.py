"""``python -m skclust_ot``: the ``skclust-ot`` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
