"""Checkpoints: atomic writes, safe loads.

A checkpoint holds only tensors and plain Python values, so it loads with
``torch.load(..., weights_only=True)`` and can never run code. It is written to a temporary file
in the same folder, flushed to disk, then renamed over the old one: a crash mid-write leaves the
previous checkpoint intact.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..config import upgrade_saved_config

FORMAT = "bgrl-werank-checkpoint-v1"
# the model itself is under "method" (or, in checkpoints written before methods, under
# online_encoder / predictor / target_encoder: see bgrl_werank.train.trainer.method_state)
REQUIRED_KEYS = ("format", "epoch", "config")


class CheckpointError(Exception):
    """A checkpoint that cannot be used, with a one-line message."""


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` atomically to ``path`` (temporary file, fsync, rename)."""
    path = Path(path)
    state = {"format": FORMAT, **state}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _load_failure(e: Exception) -> str:
    """The informative part of a ``torch.load`` failure, in one short line.

    A file that the safe unpickler refuses (a text file, another program's pickle) makes torch say
    at length that ``weights_only=False`` (or allow-listing what it refused) might work, which for
    a checkpoint of ours is never the fix; what it refused follows its "WeightsUnpickler error:",
    and its first sentence is what we show.
    """
    text = str(e).strip()
    if "WeightsUnpickler error:" in text:
        rest = text.split("WeightsUnpickler error:", 1)[1].strip().splitlines()
        text = rest[0].strip() if rest and rest[0].strip() else "refused by the safe unpickler"
    else:
        text = text.splitlines()[0] if text else type(e).__name__
    return text.split(". ", 1)[0][:160]  # its first sentence: what follows is torch's advice


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint safely; truncated, corrupted or foreign files raise :class:`CheckpointError`."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' not found; pass a run folder or its checkpoint.pt")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means the same thing to the user
        raise CheckpointError(
            f"checkpoint '{path}' cannot be read (truncated, corrupted or not a bgrl-werank checkpoint): {_load_failure(e)}"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint '{path}' is not a bgrl-werank checkpoint (no '{FORMAT}' marker)")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint '{path}' is incomplete: missing {', '.join(missing)}")
    if isinstance(state["config"], dict):
        upgrade_saved_config(state["config"])  # older checkpoints: the values they were trained with
    return state
