"""``avbridge batch`` in a real process with the fake tasks of ``batch_fake_tasks``.

Run as ``python tests/apps/batch_fake_main.py TASK --manifest ... --out ...``: the same
entry point as ``python -m avbridge.apps.batch``, with the fakes passed as parameters.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import batch_fake_tasks  # noqa: E402

from avbridge.apps.batch import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], tasks=batch_fake_tasks, load=batch_fake_tasks.load_components))
