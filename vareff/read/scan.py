"""The byte checks of a block of VCF lines in one compiled pass (the columnar reader's first test,
docs/host-path.md): printable ASCII, the header's number of tab-separated fields, none empty.
The bytes allowed are ``vareff.read.columnar.BAD_BYTE``; ``scan_numpy`` there does the same
with numpy for small inputs."""
from __future__ import annotations

import numba


@numba.njit(cache=True, nogil=True)
def scan_lines(a, n_cols, bad_byte):
    """``(good, lines, end)``: how many leading lines of ``a`` pass the byte-level checks
    (printable ASCII only, exactly ``n_cols`` non-empty tab-separated fields), how many lines
    ``a`` holds, and the offset just past the last good line.  One pass, no temporaries."""
    good, lines, end, tabs, bad, prev = 0, 0, 0, 0, False, 10
    first_bad = -1
    for i in range(len(a)):
        c = a[i]
        if c == 10:
            if prev == 10 or prev == 9 or tabs != n_cols - 1:
                bad = True
            if not bad and first_bad < 0:
                good += 1
                end = i + 1
            elif first_bad < 0:
                first_bad = lines
            lines += 1
            tabs, bad = 0, False
        elif c == 9:
            if prev == 10 or prev == 9:
                bad = True
            tabs += 1
        elif bad_byte[c]:
            bad = True
        prev = c
    return good, lines, end
