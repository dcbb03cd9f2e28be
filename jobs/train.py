"""Training, for ``ray job submit --working-dir . -- python jobs/train.py --config NAME_OR_YAML [key=value ...]``.

The same command as ``srcore train`` (the same flags, from ``pipelines.commands.train``); --help lists them.
"""

import sys

from pipelines.commands.train import main

if __name__ == "__main__":
    sys.exit(main())
