"""``python -m avbridge``: the same as the ``avbridge`` command."""

import sys

from avbridge.apps.cli import main

sys.exit(main())
