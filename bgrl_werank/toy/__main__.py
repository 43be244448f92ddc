"""``python -m bgrl_werank.toy --figure N [--config ...] [--set key=value] [--out DIR]``."""

import sys

from .cli import main

sys.exit(main())
