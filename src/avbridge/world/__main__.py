"""``python -m avbridge.world samples|bench``."""

import sys

from avbridge.world.cli import main

sys.exit(main())
