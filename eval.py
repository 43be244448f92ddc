#!/usr/bin/env python
"""Re-evaluate a checkpoint with a linear probe and write a report. See --help."""

import signal
import sys


def _terminate(signum, _frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


signal.signal(signal.SIGTERM, _terminate)  # like Ctrl-C: one line, exit 130, no half-written report
try:
    from bgrl_werank.cli import eval_main
except KeyboardInterrupt as e:
    print(f"interrupted ({str(e) or 'SIGINT'}); no report was written", file=sys.stderr)
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(eval_main())
