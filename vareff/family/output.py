"""Writing a shortlist: TSV or Parquet by extension, atomically."""
from __future__ import annotations

import os

import polars as pl

from vareff.errors import ConfigError, OutputError


def write_table(df: pl.DataFrame, path: str) -> None:
    """Write ``df`` to ``path`` (``.parquet``, or ``.tsv``/``.txt``) under a temporary name, then rename."""
    low = path.lower()
    if not low.endswith((".parquet", ".pq", ".tsv", ".txt")):
        raise ConfigError(f"cannot tell the format of {path!r} from its extension", "name it .tsv or .parquet")
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        if low.endswith((".parquet", ".pq")):
            df.write_parquet(tmp)
        else:
            df.write_csv(tmp, separator="\t", null_value=".")
        os.replace(tmp, path)
    except OSError as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise OutputError(f"cannot write {path!r}: {e.strerror or e}", "check the folder and free space") from None
