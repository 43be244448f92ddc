#!/usr/bin/env python
"""Re-evaluate a checkpoint with a linear probe and write a report. See --help."""

import signal
import sys

# As in train.py: a first SIGINT/SIGTERM while the package imports is recorded (bgrl_werank.cli acts
# on it once it is safe to stop); a second one stops at once.
_held: list[str] = []


def _hold(signum, _frame):
    _held.append(signal.Signals(signum).name)
    if len(_held) > 1:
        raise KeyboardInterrupt(_held[0])


signal.signal(signal.SIGINT, _hold)
signal.signal(signal.SIGTERM, _hold)
try:
    from bgrl_werank.cli import eval_main
except KeyboardInterrupt as e:
    print(f"interrupted ({str(e) or 'SIGINT'}); no report was written", file=sys.stderr)
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(eval_main(signals=_held))
