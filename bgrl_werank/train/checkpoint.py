"""Checkpoints: atomic writes, safe loads.

A checkpoint holds only tensors and plain Python values, so it loads with
``torch.load(..., weights_only=True)`` and can never run code. It is written to a temporary file
in the same folder, flushed to disk, then renamed over the old one: a crash mid-write, or a full
disk, leaves the previous checkpoint intact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..config import upgrade_saved_config
from ..rundir import atomic_write, free_bytes, human_bytes, is_disk_full

FORMAT = "bgrl-werank-checkpoint-v1"
# the model itself is under "method" (or, in checkpoints written before methods, under
# online_encoder / predictor / target_encoder: see bgrl_werank.train.trainer.method_state)
REQUIRED_KEYS = ("format", "epoch", "config")


class CheckpointError(Exception):
    """A checkpoint that cannot be used, with a one-line message."""


class DiskFullError(CheckpointError):
    """The filesystem filled up while a checkpoint was written; the previous checkpoint is intact."""

    def __init__(self, path: Path, needed: int | None, free: int | None) -> None:
        super().__init__(
            f"no space left on the device of '{path.parent}' while writing {path.name} (it needs about "
            f"{human_bytes(needed)}, {human_bytes(free)} free)"
        )
        self.path, self.needed, self.free = path, needed, free


def _tensor_bytes(obj: Any) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.nelement() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v) for v in obj)
    return 0


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` whole to ``path`` (:func:`bgrl_werank.rundir.atomic_write`: temporary file,
    fsync, rename; a temporary left by a killed process is removed by the folder's next owner). A
    full filesystem raises :class:`DiskFullError`, which says how much space the checkpoint needs.
    """
    path = Path(path)
    state = {"format": FORMAT, **state}
    try:
        atomic_write(path, lambda f: torch.save(state, f))
    except BaseException as e:
        if is_disk_full(e):
            previous = path.stat().st_size if path.is_file() else 0
            raise DiskFullError(path, max(previous, _tensor_bytes(state)), free_bytes(path.parent)) from None
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
