"""Progress of a long run, shared by the scoring engine and ``vareff am-build``.

On a terminal: a live rich bar (done / total, %, rate, ETA).  Without one: a log line every
``interval`` seconds (default 30, ``VAREFF_PROGRESS_INTERVAL`` overrides) with the same figures.
A background ticker refreshes both, so a long chunk of a slow model still shows a sign of life
(the time spent on the chunk in flight) instead of silence until the chunk ends.

The fraction done comes from a known total (records in the VCF index, rows) or else from the bytes
read of the input file (:class:`FilePosition`); it is unknown for stdin.
"""
from __future__ import annotations

import gzip
import logging
import os
import sys
import threading
import time
from collections.abc import Callable

log = logging.getLogger("vareff")

#: seconds between log lines when stderr is not a terminal
DEFAULT_INTERVAL = 30.0


def default_interval() -> float:
    try:
        return max(float(os.environ.get("VAREFF_PROGRESS_INTERVAL", DEFAULT_INTERVAL)), 0.01)
    except ValueError:
        return DEFAULT_INTERVAL


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


#: unindexed text VCFs up to this size (on disk) are counted before the run: their bytes read say
#: little, since htslib reads small files in one go
COUNT_BELOW_BYTES = 8 << 20


def quick_record_count(path: str, max_bytes: int = COUNT_BELOW_BYTES) -> int | None:
    """Data lines of a small text VCF (plain, gzip or bgzip); None for larger files, BCF or stdin."""
    if path == "-" or path.endswith(".bcf") or not os.path.isfile(path) or os.path.getsize(path) > max_bytes:
        return None
    try:
        with open(path, "rb") as fh:
            opener = gzip.open if fh.read(2) == b"\x1f\x8b" else open
        with opener(path, "rb") as fh:
            return sum(1 for line in fh if line.strip() and not line.startswith(b"#"))
    except (OSError, EOFError, gzip.BadGzipFile):
        return None


class FilePosition:
    """Bytes read so far of an input file another library opened (Linux ``/proc/self/fdinfo``).

    htslib reads the (compressed) file sequentially, so the offset of its descriptor over the file
    size is the fraction of the input consumed.  ``fraction()`` is None where this cannot be told.
    """

    def __init__(self, path: str):
        self.path = os.path.realpath(path)
        self.size = os.path.getsize(path) if os.path.isfile(path) else 0
        self.fd: int | None = None

    def _find_fd(self) -> int | None:
        try:
            fds = sorted((int(f) for f in os.listdir("/proc/self/fd")), reverse=True)
        except OSError:
            return None
        for fd in fds:
            try:
                if os.readlink(f"/proc/self/fd/{fd}") == self.path:
                    return fd
            except OSError:
                continue
        return None

    def fraction(self) -> float | None:
        if not self.size:
            return None
        if self.fd is None:
            self.fd = self._find_fd()
            if self.fd is None:
                return None
        try:
            with open(f"/proc/self/fdinfo/{self.fd}") as fh:
                pos = int(fh.readline().split()[1])
        except (OSError, ValueError, IndexError):
            return None
        return min(pos / self.size, 1.0)


class Progress:
    """Counts of work done and their display (bar on a terminal, throttled log lines otherwise).

    ``update(n, rate_n, where)`` adds ``n`` units (records, rows) and ``rate_n`` rated items
    (alleles); ``working(where)`` marks the start of a unit of work (a chunk) for heartbeats.
    ``total``: units expected, or ``fraction``: a callable giving the fraction done (bytes read).
    """

    def __init__(self, enabled: bool = True, *, total: int | None = None,
                 fraction: Callable[[], float | None] | None = None, label: str = "scoring",
                 unit: str = "records", rate_unit: str = "alleles", interval: float | None = None,
                 console=None):
        self.enabled = enabled
        self.total, self._fraction, self.label = total, fraction, label
        self.unit, self.rate_unit = unit, rate_unit
        self.interval = default_interval() if interval is None else interval
        self.t0 = time.monotonic()
        self.done = self.rated = 0
        self.where = ""
        self.chunk_t0: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bar = self._task = None
        self._handlers: list = []
        if not enabled:
            return
        from rich.console import Console

        self.console = console if console is not None else Console(stderr=True)
        if self.console.is_terminal:
            self._start_bar()
        self._thread = threading.Thread(target=self._tick, name="vareff-progress", daemon=True)
        self._thread.start()

    # -- figures ---------------------------------------------------------------------------------
    @property
    def seconds(self) -> float:
        return time.monotonic() - self.t0

    @property
    def rate(self) -> float:
        return self.rated / max(self.seconds, 1e-9)

    # kept for callers of the former API
    @property
    def alleles(self) -> int:
        return self.rated

    @property
    def records(self) -> int:
        return self.done

    def fraction(self) -> float | None:
        if self.total:
            return min(self.done / self.total, 1.0)
        if self._fraction is not None:
            return self._fraction()
        return None

    def figures(self, compact: bool = False) -> str:
        """``done / total unit (pct), rated, rate, ETA`` in one line (``compact``: for the bar,
        without the rated count)."""
        frac = self.fraction()
        total = f"{self.total:,}" if self.total else f"~{int(self.done / frac):,}" if frac and self.done else "?"
        parts = [f"{self.done:,}/{total} {self.unit}" if compact else f"{self.done:,} / {total} {self.unit}"]
        if frac is not None:
            parts[0] += f" {100 * frac:.0f}%" if compact else f" ({100 * frac:.1f}%)"
        if self.rate_unit != self.unit and not compact:
            parts.append(f"{self.rated:,} {self.rate_unit}")
        parts.append(f"{self.rate:,.{0 if compact and self.rate >= 10 else 1}f} {self.rate_unit}/s")
        elapsed = self.seconds
        if frac:
            parts.append(f"ETA {_duration(elapsed * (1 - frac) / frac)}")
        else:
            parts.append("ETA unknown")
        if compact and self.chunk_t0 is not None and time.monotonic() - self.chunk_t0 >= 2:
            parts.append(f"chunk {_duration(time.monotonic() - self.chunk_t0)}")  # a sign of life on a slow chunk
        return (" · " if compact else ", ").join(parts)

    def status(self) -> str:
        where = f"at {self.where}" if self.where else ""
        if self.chunk_t0 is not None:
            busy = time.monotonic() - self.chunk_t0
            if busy >= min(1.0, self.interval):
                where = f"{where}; working for {_duration(busy)}" if where else f"working for {_duration(busy)}"
        return where

    def line(self) -> str:
        st = self.status()
        return f"{self.label}: {self.figures()}" + (f" ({st})" if st else "")

    # -- events ----------------------------------------------------------------------------------
    def working(self, where: str = "") -> None:
        """A unit of work (e.g. a chunk starting at ``where``) has begun."""
        self.chunk_t0 = time.monotonic()
        if where:
            self.where = where

    def update(self, n: int, rated: int = 0, where: str = "") -> None:
        self.done += n
        self.rated += rated
        self.chunk_t0 = None
        if where:
            self.where = where
        self._refresh_bar()

    def log_now(self) -> None:
        if self.enabled:
            log.info("%s", self.line())

    # -- display ---------------------------------------------------------------------------------
    def _tick(self) -> None:
        period = 0.5 if self._bar is not None else self.interval
        while not self._stop.wait(period):
            if self._bar is not None:
                self._refresh_bar()
            else:
                self.log_now()

    def _start_bar(self) -> None:
        from rich.progress import BarColumn, Progress as RichProgress, TextColumn

        # the figures hold %, rate and ETA; the status (position, time on the chunk) is cut first
        columns = [TextColumn("{task.description}"), BarColumn(bar_width=12), TextColumn("{task.fields[figures]}")]
        if self.console.width >= 120:
            columns.append(TextColumn("{task.fields[status]}"))
        self._bar = RichProgress(*columns, console=self.console, transient=False, refresh_per_second=4)
        self._task = self._bar.add_task(self.label, total=None, figures="", status="")
        self._bar.start()
        # log lines written while the bar is live go above it, not through it
        proxy = sys.stderr
        for h in logging.getLogger().handlers + log.handlers:
            if isinstance(h, logging.StreamHandler) and h.stream in (sys.__stderr__, getattr(proxy, "rich_proxied_file", None)):
                self._handlers.append((h, h.stream))
                h.setStream(proxy)

    def _refresh_bar(self) -> None:
        if self._bar is None:
            return
        frac = self.fraction()
        self._bar.update(self._task, total=None if frac is None else 1000, completed=0 if frac is None else frac * 1000,
                         figures=self.figures(compact=True), status=self.status())

    def close(self) -> None:
        """Stop the ticker and the bar (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        if self._bar is not None:
            self._refresh_bar()
            for h, stream in self._handlers:
                h.setStream(stream)
            self._handlers = []
            self._bar.stop()
            self._bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
