#!/usr/bin/env python
"""Pretrain with BGRL (+ WERank) and print the linear-evaluation report. See --help."""

import sys

from bgrl_werank.cli import train_main

if __name__ == "__main__":
    sys.exit(train_main())
