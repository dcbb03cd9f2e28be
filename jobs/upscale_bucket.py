"""The bucket job, for ``ray job submit --working-dir . -- python jobs/upscale_bucket.py --input ... --output ...``.

The same command as ``srcore bucket`` (the same flags, from ``pipelines.commands.bucket``); --help lists them.
"""

import sys

from pipelines.commands.bucket import main

if __name__ == "__main__":
    sys.exit(main())
