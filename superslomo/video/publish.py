"""Claiming an output for one run and publishing it without clobbering (issue 14: two runs on one
output both said they succeeded, the last rename silently winning; an existing file was
replaced without a word).

A run holds an exclusive lock on `.<name>.lock` beside its target from before the model loads to
the end. The lock is an flock, so it dies with its process: a crashed run leaves at most an
unlocked file, which the next run takes over. The finished file is published with a hard link,
which fails if the target appeared meanwhile, unless the user asked to overwrite.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from superslomo.errors import SloMoError

if TYPE_CHECKING:
    from typing_extensions import Self

OVERWRITE_HINT = "pass -y/--overwrite to replace it"


def lock_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.lock")


class OutputLock:
    """An exclusive claim on `target` for this run (process or thread); release() on every path."""

    def __init__(self, target: Path, path: Path | None = None, made: Path | None = None) -> None:
        """`path`: the lock file (default `.<name>.lock` beside `target`); `made`: a folder this
        run created for its output, removed on release if nothing was published into it."""
        self.target = Path(target)
        self.path = path or lock_path(self.target)
        self.made = made
        self._fd: int | None = None

    def acquire(self) -> OutputLock:
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as error:
                raise SloMoError(f"cannot create the lock {self.path}: {error.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                holder = _read_pid(fd)
                os.close(fd)
                if error.errno in (errno.EAGAIN, errno.EACCES):
                    who = f" (pid {holder})" if holder else ""
                    raise SloMoError(
                        f"{self.target} is being written by another run{who}; wait for it "
                        f"or choose another output"
                    ) from None
                raise SloMoError(f"cannot lock {self.path}: {error.strerror}") from None
            # The holder before us may have unlinked the file between our open and our lock:
            # then we hold a lock nobody else can see. Only the file at the path counts.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self._fd = fd
                return self
            os.close(fd)

    def release(self) -> None:
        if self._fd is None:
            return
        # Unlink while still holding the lock, so a waiting run never locks a file that is gone.
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        os.close(self._fd)
        self._fd = None
        if self.made is not None:
            try:
                self.made.rmdir()  # only if empty: a published sequence stays
            except OSError:
                pass

    def __enter__(self) -> Self:
        return self if self._fd is not None else self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


def check_new(target: Path, overwrite: bool) -> None:
    """Refuse an existing output unless the user said to replace it."""
    if not overwrite and (target.exists() or target.is_symlink()):
        raise SloMoError(f"{target} exists; {OVERWRITE_HINT}")


class TargetAppeared(SloMoError):
    """The target of a publish appeared while the run was writing, and may not be replaced."""


def publish_file(temp: Path, target: Path, overwrite: bool) -> None:
    """Move the finished `temp` to `target` in one step. Without `overwrite`, a target that
    appeared while this run was working is left alone (and the run fails)."""
    if overwrite:
        os.replace(temp, target)
        return
    try:
        os.link(temp, target)  # fails if target exists: rename would silently replace it
    except FileExistsError:
        raise TargetAppeared(
            f"{target} appeared while this run was writing it; nothing was replaced ({OVERWRITE_HINT})"
        ) from None
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV):
            raise
        # No hard links here (FAT, some network mounts): check, then rename. The lock still keeps
        # other runs of this tool out; only a third party could slip in between.
        if target.exists():
            raise TargetAppeared(
                f"{target} appeared while this run was writing it; nothing was replaced ({OVERWRITE_HINT})"
            ) from None
        os.replace(temp, target)
        return
    temp.unlink()


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Ctrl-C (SIGINT) held back until the block ends, for a publish of many files that must
    land whole or not at all: the interrupt is delivered (and raised) right after it. Python
    runs signal handlers on the main thread only, so elsewhere there is nothing to hold back."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
