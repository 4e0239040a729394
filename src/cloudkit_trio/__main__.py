"""``python -m cloudkit_trio``: the ``cloudkit-trio`` command line."""

import sys

from .demo import main

if __name__ == "__main__":
    sys.exit(main())
