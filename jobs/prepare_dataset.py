"""Training shards, for ``ray job submit --working-dir . -- python jobs/prepare_dataset.py --input ... --output ...``.

The same command as ``srcore prepare`` (the same flags, from ``pipelines.commands.prepare``); --help lists them.
"""

import sys

from pipelines.commands.prepare import main

if __name__ == "__main__":
    sys.exit(main())
