"""SIGINT/SIGTERM during a run: stop between chunk writes, keep every finished chunk, say how to resume."""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager


class RunInterrupted(KeyboardInterrupt):
    """SIGINT/SIGTERM during a run: finished chunks are on disk, ``--resume`` continues."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")


class StopSignals:
    """Turn SIGINT/SIGTERM into :class:`RunInterrupted`, but never inside :meth:`atomic` (a chunk
    being written is finished first).  Only the main thread can install handlers; elsewhere this
    is a no-op."""

    def __init__(self):
        self.old: dict = {}
        self.busy = False
        self.pending: int | None = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, h in self.old.items():
            signal.signal(sig, h)
        self.old = {}

    def _handle(self, signum, frame):
        if self.busy:
            self.pending = signum
            return
        raise RunInterrupted(signum)

    @contextmanager
    def atomic(self):
        self.busy = True
        try:
            yield
        finally:
            self.busy = False
        if self.pending is not None:
            raise RunInterrupted(self.pending)
