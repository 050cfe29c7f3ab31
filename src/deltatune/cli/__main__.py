"""``python -m deltatune.cli``: the ``deltatune`` command."""

import sys

from . import main

sys.exit(main())
