"""One output, one writer: an exclusive ``flock`` on ``<parts folder>/lock`` for a run's lifetime.

The kernel drops a ``flock`` when its holder dies (even by SIGKILL), so a lock left by a killed
run is never in the way: the file only still names that run's PID, which the next run reports
when it takes over.  A run that finds the lock held stops at once, naming the holder's PID.
The lock file lives in the parts folder, which the finishing run removes; a run that opened the
file just before it was unlinked notices (the inode at the path changed) and starts again.
"""
from __future__ import annotations

import errno
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from vareff.errors import OutputError, OutputLockedError

LOCK_NAME = "lock"


@dataclass
class HeldLock:
    """A lock this process holds; ``previous`` is the PID recorded by an earlier (dead) holder."""

    path: Path
    fd: int
    previous: int | None

    def release(self, unlink: bool = False, restore: bool = False) -> None:
        """Drop the lock; ``unlink``: remove the file too; ``restore``: give the file back the PID it
        named before (this run did no work, so the parts still belong to that earlier run)."""
        if self.fd < 0:
            return
        if restore and self.previous and not unlink:
            try:
                os.ftruncate(self.fd, 0)
                os.pwrite(self.fd, f"{self.previous}\n".encode(), 0)
            except OSError:
                pass
        if unlink:
            try:
                self.path.unlink()
            except OSError:
                pass
        os.close(self.fd)  # closing the descriptor drops the flock
        self.fd = -1


def _recorded_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or "x")
    except (OSError, ValueError):
        return None


def _cannot(e: OSError, path: Path, output: str) -> OutputError:
    hint = ("free space on that filesystem, then rerun" if e.errno in (errno.ENOSPC, errno.EDQUOT)
            else "choose an output in a folder you can write to")
    return OutputError(f"cannot write {str(path)!r} (the lock of the output {output!r}): {e.strerror or e}", hint)


def acquire(folder: Path, output: str) -> HeldLock:
    """Lock ``folder`` (created if needed) for writing ``output``, or raise :class:`OutputLockedError`."""
    path = folder / LOCK_NAME
    for _ in range(20):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise _cannot(e, path, output) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _recorded_pid(fd)
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise OutputError(f"cannot lock {str(path)!r}: {e.strerror or e}",
                                  "put the output on a filesystem that supports flock") from None
            who = f"PID {holder}" if holder else "a process that is starting up"
            raise OutputLockedError(
                f"the output {output!r} is being written by another vareff run ({who})",
                "two runs must not write the same output: wait for that run to finish, or stop it and rerun "
                "the same command with --resume, or choose another -o path") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # the file was removed by a run finishing just now: lock the new one
            os.close(fd)
            continue
        previous = _recorded_pid(fd)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as e:
            os.close(fd)
            raise _cannot(e, path, output) from None
        return HeldLock(path, fd, previous if previous != os.getpid() else None)
    raise OutputError(f"could not lock {str(path)!r}: it keeps being replaced", "is another run finishing?")
