#!/usr/bin/env python
"""Pretrain a self-supervised method (+ WERank) and print the linear-evaluation report. See --help."""

import signal
import sys


def _terminate(signum, _frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


# SIGTERM is handled like Ctrl-C from the first moment (one line, exit 130, the folder resumable);
# an interrupt while the libraries are still being imported has written nothing.
signal.signal(signal.SIGTERM, _terminate)
try:
    from bgrl_werank.cli import train_main
except KeyboardInterrupt as e:
    print(f"interrupted ({str(e) or 'SIGINT'}) before the run started; nothing was written", file=sys.stderr)
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(train_main())
