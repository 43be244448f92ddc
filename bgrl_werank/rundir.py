"""Run folders: naming, a writability check before any work, and trimming logs on resume."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path


def run_dir_path(explicit: str | None, parent: str | Path) -> Path:
    """``explicit`` if given, else ``parent/<timestamp>`` (microseconds, so parallel runs never collide)."""
    if explicit:
        return Path(explicit)
    return Path(parent) / _dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")


def make_writable(run_dir: Path) -> None:
    """Create ``run_dir`` and prove it is writable; raises OSError otherwise."""
    run_dir.mkdir(parents=True, exist_ok=True)
    probe = run_dir / ".write-test"
    probe.write_text("")
    probe.unlink()


def trim_jsonl(path: Path, epoch: int) -> None:
    """Keep the records of ``path`` with ``epoch`` ≤ the given one; stop at a torn last line.

    A run killed between logging an epoch and checkpointing it leaves records past the checkpoint;
    a resumed run drops them so its logs match the state it continues from.
    """
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["epoch"] <= epoch:
                kept.append(line)
        except (ValueError, KeyError):
            break
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(k + "\n" for k in kept))
    tmp.replace(path)
