#!/usr/bin/env python
"""Pretrain a self-supervised method (+ WERank) and print the linear-evaluation report. See --help."""

import signal
import sys

# Until bgrl_werank.cli takes over (SignalGate), a first SIGINT/SIGTERM is only recorded: an interrupt
# inside an import can leave a library half-imported. A second one stops at once.
_held: list[str] = []


def _hold(signum, _frame):
    _held.append(signal.Signals(signum).name)
    if len(_held) > 1:
        raise KeyboardInterrupt(_held[0])


signal.signal(signal.SIGINT, _hold)
signal.signal(signal.SIGTERM, _hold)
try:
    from bgrl_werank.cli import train_main
except KeyboardInterrupt as e:
    print(f"interrupted ({str(e) or 'SIGINT'}) before the run started; nothing was written", file=sys.stderr)
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(train_main(signals=_held))
