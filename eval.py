#!/usr/bin/env python
"""Re-evaluate a checkpoint with a linear probe and write a report. See --help."""

import sys

from bgrl_werank.cli import eval_main

if __name__ == "__main__":
    sys.exit(eval_main())
