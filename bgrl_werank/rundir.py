"""Run folders as a trustworthy record: one owner, atomic files, append-only logs.

A run folder (``train.py``'s ``runs/<name>/<timestamp>/``, a sweep's cells) promises:

* **One writer.** A process that writes a run folder first :func:`claim`\\ s it: an exclusive
  ``flock`` on ``<folder>/.lock``, held until the process exits or releases it. The kernel drops the
  lock when its process dies (even by SIGKILL), so a crashed run never blocks its resume; a second
  live writer gets :class:`RunDirError` before it writes anything.
* **Whole files.** ``config.yaml``, ``progress.json``, reports and checkpoints are written to a
  temporary file beside the target and renamed over it (:func:`atomic_write_text`): a reader, or a
  crash, sees the old file or the new one, never a mix. Temporaries carry the writer's pid; the
  owner of a folder removes those of dead writers (:func:`remove_stale_temporaries`).
* **Append-only logs.** ``metrics.jsonl`` and ``spectra.jsonl`` get one whole line per record
  (:class:`JsonlAppender`: one ``write`` of valid JSON, non-finite numbers as ``null``). On resume the
  records past the checkpoint (which the resumed run rewrites identically) and a torn last line
  (a crash artefact) are dropped; a damaged line anywhere else is an error naming it
  (:func:`trim_jsonl`), never silently deleted.

What ``--resume`` and ``eval.py`` may change is decided in :mod:`bgrl_werank.cli`; the guarantees
and the tests that hold each of them: ``docs/guarantees.md``.
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import math
import os
import socket
import sys
from pathlib import Path
from typing import Any, BinaryIO, Callable

LOCK_NAME = ".lock"
TMP_SUFFIX = ".tmp"


class RunDirError(Exception):
    """A run folder cannot be used (in use, holds another run, damaged, unwritable), in one line."""


def run_dir_path(explicit: str | None, parent: str | Path) -> Path:
    """``explicit`` if given, else ``parent/<timestamp>`` (microseconds, so parallel runs never collide)."""
    if explicit:
        return Path(explicit)
    return Path(parent) / _dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")


def make_writable(run_dir: Path) -> None:
    """Create ``run_dir`` and prove it is writable; raises OSError otherwise."""
    run_dir.mkdir(parents=True, exist_ok=True)
    probe = run_dir / f".write-test.{os.getpid()}{TMP_SUFFIX}"
    probe.write_text("")
    probe.unlink()


def is_disk_full(e: BaseException | None) -> bool:
    """Whether ``e``, or an exception it was raised from, is a full filesystem (or an exhausted quota).

    torch.save reports a failed write as a RuntimeError ("unexpected pos ...") raised while the
    OSError(ENOSPC) of the file object is being handled, so the chain is followed.
    """
    seen = 0
    while e is not None and seen < 10:
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        e, seen = e.__cause__ or e.__context__, seen + 1
    return False


def free_bytes(folder: str | Path) -> int | None:
    """Bytes free for this user on ``folder``'s filesystem, or None when that cannot be read."""
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):
        return None
    return st.f_bavail * st.f_frsize


def human_bytes(n: float | None) -> str:
    if n is None:
        return "an unknown amount"
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover


# --------------------------------------------------------------------------------------------------
# One writer per folder


# Folders this process holds: resolved path -> [file descriptor, claims]. A process may claim a folder
# it already holds (the CLI, then the trainer): flock would otherwise refuse our own second descriptor.
_HELD: dict[str, list[int]] = {}


def _owner_of(lock_file: Path) -> str:
    try:
        info = json.loads(lock_file.read_text() or "{}")
        return f"pid {info['pid']} on {info['host']}, since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


class RunFolderClaim:
    """This process's ownership of a run folder (see :func:`claim`); ``release()`` or a ``with`` block
    gives it up (the process's exit always does)."""

    def __init__(self, folder: Path, key: str) -> None:
        self.folder, self._key, self._released = folder, key, False

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        held = _HELD.get(self._key)
        if held is None:
            return
        held[1] -= 1
        if held[1] == 0:
            del _HELD[self._key]
            os.close(held[0])  # closing the descriptor drops the flock

    def __enter__(self) -> "RunFolderClaim":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def claim(folder: str | Path, hint: str = "wait for it to finish, or choose another --run-dir",
          what: str = "run folder") -> RunFolderClaim:
    """Make this process the only writer of ``folder`` (which must exist) until it releases it or exits.

    ``hint``: what the one-line error tells a second writer to do; ``what``: what it calls the folder.

    Raises:
        RunDirError: another live process holds the folder (the message names it), or ``.lock`` is
            not a plain file (a link is never followed).
    """
    folder = Path(folder)
    key = str(folder.resolve())
    if key in _HELD:
        _HELD[key][1] += 1
        return RunFolderClaim(folder, key)
    lock_file = folder / LOCK_NAME
    try:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
    except OSError as e:
        raise RunDirError(f"cannot claim '{folder}': its {LOCK_NAME} is not a plain file ({e.strerror}); remove it") from None
    try:
        _lock(fd)
    except BlockingIOError:
        os.close(fd)
        raise RunDirError(f"{what} '{folder}' is in use by {_owner_of(lock_file)}; {hint}") from None
    except BaseException:
        os.close(fd)
        raise
    info = {"pid": os.getpid(), "host": socket.gethostname(), "since": _dt.datetime.now().isoformat(timespec="seconds"),
            "command": " ".join(sys.argv)[:500]}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
    _HELD[key] = [fd, 1]
    return RunFolderClaim(folder, key)


def _lock(fd: int) -> None:
    """An exclusive, non-blocking lock on ``fd`` that the OS drops when the process dies."""
    try:
        import fcntl
    except ImportError:  # Windows: a byte-range lock on the lock file's first byte
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            raise BlockingIOError(errno.EAGAIN, "locked") from None
        return
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def close_inherited_claims() -> None:
    """In a child process made by ``fork``: close the descriptors of the claims the parent holds.

    A forked child shares its parent's lock (``flock`` belongs to the open file, which both now
    reference), so a child outliving a killed parent would keep the folder locked. The parent's own
    descriptors, and so its claims, are unaffected.
    """
    for fd, _ in list(_HELD.values()):
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


def holds(folder: str | Path) -> bool:
    """Whether this process has claimed ``folder``."""
    return str(Path(folder).resolve()) in _HELD


# --------------------------------------------------------------------------------------------------
# Whole files


def temporary_name(target: Path) -> Path:
    """The temporary file a writer of ``target`` uses: hidden, beside it, with the writer's pid."""
    return target.with_name(f".{target.name}.{os.getpid()}{TMP_SUFFIX}")


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None], exclusive: bool = False) -> None:
    """Write a file whole: ``write(f)`` fills a temporary beside ``path`` (:func:`temporary_name`),
    which is flushed to disk and renamed over ``path``; whatever stops it (an error, Ctrl-C, a full
    disk) removes the temporary, so no partial file ever remains. The file gets the mode of any other
    new file (0666 less the umask), and a link at ``path`` is replaced, never followed.

    ``exclusive``: fail with FileExistsError if ``path`` exists (also when another process creates
    it meanwhile) instead of replacing it. OSErrors name ``path``, not the temporary.
    """
    path = Path(path)
    tmp = temporary_name(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if exclusive:
            try:
                os.link(tmp, path)  # fails if path exists, atomically: never replaces another writer's file
            except FileExistsError:
                raise
            except OSError:  # a filesystem without hard links: an exclusive create, then the bytes
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
                with os.fdopen(fd, "wb") as f:
                    write(f)
            tmp.unlink()
        else:
            os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise type(e)(e.errno, e.strerror, str(path)) from None  # the target, not the temporary
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes, exclusive: bool = False) -> None:
    """:func:`atomic_write` of ``data``."""
    atomic_write(path, lambda f: f.write(data), exclusive)


def atomic_write_text(path: str | Path, text: str, exclusive: bool = False) -> None:
    atomic_write_bytes(path, text.encode(), exclusive)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Remove the temporaries (``.<name>.<pid>.tmp``) that dead writers left in ``folder``; returns them.

    Call it as the folder's owner (:func:`claim`): no other process then writes there, so every
    temporary of another pid is a dead writer's (a checkpoint write killed by SIGKILL leaves one as
    large as the checkpoint).
    """
    removed = []
    for p in Path(folder).iterdir():
        name = p.name
        if not (name.startswith(".") and name.endswith(TMP_SUFFIX)) or not p.is_file():
            continue
        pid_text = name[: -len(TMP_SUFFIX)].rsplit(".", 1)[-1]
        pid = int(pid_text) if pid_text.isdigit() else None
        if pid is not None and pid == os.getpid():
            continue
        if pid is None or not _pid_alive(pid) or holds(folder):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


LOGS = ("metrics.jsonl", "spectra.jsonl")


def take_over(folder: str | Path, epoch: int) -> list[str]:
    """What the owner of a run folder does before it writes there: check that the logs are plain
    files (a link would be written through), remove dead writers' temporaries, and cut the logs back
    to ``epoch`` (:func:`trim_jsonl`); returns what was dropped, in words. Raises before changing
    anything if a log is a link or is damaged."""
    folder = Path(folder)
    for name in LOGS:
        p = folder / name
        if p.is_symlink() or (os.path.lexists(p) and not p.is_file()):
            raise RunDirError(f"'{p}' is not a plain file (a link or a folder): a run's logs must be plain files; "
                              f"replace it with the file it points to")
    parsed = {name: _parse_jsonl(folder / name) for name in LOGS}  # a damaged line stops us before any change
    remove_stale_temporaries(folder)
    return [d for name in LOGS for d in _trim(folder / name, *parsed[name], epoch)]


# --------------------------------------------------------------------------------------------------
# Append-only logs


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None, so ``json.dumps`` writes valid JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def json_line(record: dict[str, Any]) -> bytes:
    """One record as one line of strict JSON (NaN and ±Inf written as null)."""
    return (json.dumps(json_safe(record), allow_nan=False) + "\n").encode()


class JsonlAppender:
    """Appends records to a ``.jsonl`` file, one ``write`` call per whole line (``O_APPEND``).

    A line is never interleaved with another writer's, and a failed write (a full disk) leaves at
    most one torn last line, which :func:`trim_jsonl` recognises as a crash artefact.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
        except OSError as e:
            raise RunDirError(f"cannot append to '{self.path}' ({e.strerror}): a run's logs must be plain files, "
                              f"not links; replace it with the file it points to") from None

    def write(self, record: dict[str, Any]) -> None:
        data = json_line(record)
        try:
            written = os.write(self._fd, data)
        except OSError as e:
            raise OSError(e.errno, e.strerror, str(self.path)) from None
        if written != len(data):  # a short write: only a full disk does that to a regular file
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "JsonlAppender":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _parse_jsonl(path: Path) -> tuple[list[tuple[bytes, dict[str, Any]]], bool]:
    if not path.exists():
        return [], False
    lines = path.read_bytes().split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline, else a line cut short
    out = []
    for i, line in enumerate(lines, 1):
        if not line.strip():  # a blank line holds no record (an editor may add one)
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict) or not isinstance(rec.get("epoch"), int):
                raise ValueError("not a record with an integer 'epoch'")
        except (ValueError, UnicodeDecodeError) as e:
            why = " ".join(str(e).split())[:80]
            raise RunDirError(
                f"'{path}' line {i} is damaged ({why}); the log is kept as it is: repair or delete that line "
                f"(records after it are intact), then run again"
            ) from None
        out.append((line, rec))
    return out, bool(tail)


def read_jsonl(path: str | Path) -> tuple[list[dict[str, Any]], bool]:
    """The records of a log and whether its last line was torn (no final newline: a crash artefact,
    left out). A damaged line anywhere else raises :class:`RunDirError` naming the file and line."""
    parsed, torn = _parse_jsonl(Path(path))
    return [rec for _, rec in parsed], torn


def trim_jsonl(path: Path, epoch: int) -> list[str]:
    """Keep the records of ``path`` up to ``epoch`` (those a resumed run continues from); returns what
    was dropped, in words.

    A run killed between logging an epoch and checkpointing it leaves records past the checkpoint,
    which the resumed run writes again (identically); a torn last line is a crash artefact. Both are
    dropped; the lines kept are kept byte for byte. A damaged line elsewhere raises
    :class:`RunDirError` and the file stays as it is.
    """
    path = Path(path)
    return _trim(path, *_parse_jsonl(path), epoch)


def _trim(path: Path, parsed: list[tuple[bytes, dict[str, Any]]], torn: bool, epoch: int) -> list[str]:
    kept = [line for line, rec in parsed if rec["epoch"] <= epoch]
    dropped = []
    if len(kept) < len(parsed):
        dropped.append(f"{len(parsed) - len(kept)} record(s) of {path.name} past epoch {epoch}")
    if torn:
        dropped.append(f"a torn last line of {path.name}")
    if dropped:
        atomic_write_bytes(path, b"".join(line + b"\n" for line in kept))
    return dropped
