"""Benchmark scores on one machine (no Ray): ``python jobs/evaluate.py --model NAME --sets Set5,Set14``.

The same command as ``srcore evaluate`` (the same flags, from ``srcore.evaluate_command``); --help lists them.
"""

import sys

from srcore.evaluate_command import main

if __name__ == "__main__":
    sys.exit(main())
