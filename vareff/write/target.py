"""Where each output goes: a regular file (written atomically) or a stream (stdout, FIFO, device).

Atomic outputs are written under a temporary name and renamed into place, but a rename replaces
the *name*: over a FIFO, a device or a symlink such as ``/dev/stdout`` it would destroy that
special file.  So ``-`` and any path that is (or links to) a FIFO or character device is a
*stream*: written in order as the run goes, never renamed over, never resumable.  A symlink to a
regular file is replaced at its target, so the link stays a link.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

from vareff.config import OutputSpec
from vareff.errors import ConfigError, OutputError

STDOUT = "-"


def is_stream(path: str) -> bool:
    """True for ``-`` and for paths that are, or link to, a FIFO or character device."""
    if path == STDOUT:
        return True
    try:
        mode = os.stat(path).st_mode  # follows symlinks
    except OSError:
        return False  # absent (or a dangling link): a new regular file
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)


def final_path(path: str) -> Path:
    """The name an atomic output replaces: a symlink's target (absolute), else the path itself."""
    p = Path(path)
    return Path(os.path.realpath(p)) if p.is_symlink() else p


def parts_dir(path: str) -> Path:
    """``.<name>.vareff-parts`` beside an output's final file: its part files, manifest and lock."""
    f = final_path(path).absolute()
    return f.with_name(f".{f.name}.vareff-parts")


def check_output(spec: OutputSpec, resume: bool) -> None:
    """Refuse, before any work, an output that cannot be written as asked."""
    path = spec.path
    if is_stream(path):
        what = "stdout" if path == STDOUT else f"{path!r} (a FIFO or device)"
        if resume:
            raise ConfigError(f"--resume cannot continue an output streamed to {what}: what was streamed is gone",
                              "rerun without --resume, or write to a regular file to be able to resume")
        if spec.format == "parquet":
            raise ConfigError(f"Parquet cannot be streamed to {what} (its footer is written last)",
                              "use -O vcf or -O tsv for a stream, or write the Parquet to a file")
        return
    final = final_path(path)
    if final.is_dir():
        raise OutputError(f"the output {path!r} is an existing directory",
                          f"give a file name, e.g. -o {os.path.join(path, 'scores.' + spec.format)}")
    if final.exists() and not final.is_file():
        raise OutputError(f"the output {path!r} exists and is not a regular file, FIFO or device",
                          "choose another -o path")
    folder = final.parent if str(final.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(f"the folder of the output {path!r} does not exist ({str(folder)!r})",
                          f"create it first (mkdir -p {folder}) or choose another -o path")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write the output {path!r}: its folder {str(folder)!r} is not writable "
                          "(permissions or a read-only filesystem)",
                          "choose an output in a folder you can write to")


def check_outputs(outputs: tuple[OutputSpec, ...], resume: bool) -> None:
    for o in outputs:
        check_output(o, resume)
