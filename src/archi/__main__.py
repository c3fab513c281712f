"""``python -m archi``: the ``archi`` command (:mod:`archi.cli`)."""

import sys

from archi.cli import main

sys.exit(main())
