"""VCF records of a chunk -> the columns the pipeline normalizes, with the malformed-record checks.

A record htslib refused (:class:`~vareff.read.vcf.BadRecord`) or misread (whitespace inside a field,
POS past 2^31-1) stops the run with its line, or with ``--skip-malformed`` becomes a row of status
``malformed_record``; warnings are capped per reason (:class:`Warnings`).
"""
from __future__ import annotations

import logging
from collections import Counter
from itertools import chain

from vareff.errors import MalformedRecordError
from vareff.read.vcf import MAX_POS, BadRecord, VcfReader, line_problem

log = logging.getLogger("vareff")


class Warnings:
    """At most ``cap`` warnings per reason, then one 'suppressing' line (counts go to the summary)."""

    def __init__(self, cap: int = 10):
        self.cap, self.seen = cap, Counter()

    def __call__(self, reason: str, msg: str, *args) -> None:
        self.seen[reason] += 1
        if self.seen[reason] <= self.cap:
            log.warning(msg, *args)
        elif self.seen[reason] == self.cap + 1:
            log.warning("further %s warnings suppressed; see the summary", reason)


def record_columns(chunk, reader: VcfReader, skip_malformed: bool, warn: Warnings) -> tuple[list, ...]:
    """cyvcf2 records -> (chrom, pos1, id, ref, alts, malformed) columns; malformed ones never touch REF/ID.

    Malformed: lines htslib refused (:class:`BadRecord`) or parsed without REF (``end <= start``),
    and, checked on the whole chunk at once so the normal path stays cheap, whitespace inside
    CHROM/REF/ALT or a POS past 2^31-1.  Each stops the run, or with ``skip_malformed`` becomes a
    ``malformed_record`` row (its key columns are nulled by :func:`split_columns`)."""
    chrom, pos, ids, refs, alts, mal = [], [], [], [], [], []
    for v, loc in chunk:
        s = v.start
        if v.end <= s:  # never read REF/ID of such a record
            chrom.append(_malformed(reader, v, loc, None, skip_malformed, warn))
            pos.append(0), ids.append(None), refs.append(""), alts.append(()), mal.append(True)
            continue
        chrom.append(v.CHROM), pos.append(s + 1), ids.append(v.ID), refs.append(v.REF), alts.append(v.ALT)
        mal.append(False)
    if (" " in "".join(filter(None, chrom)) or " " in "".join(refs) or " " in "".join(chain.from_iterable(alts))
            or max(pos, default=0) > MAX_POS):
        for i, (v, loc) in enumerate(chunk):
            if mal[i]:
                continue
            problem = next((f"{name} {val!r} contains whitespace" for name, val in
                            (("CHROM", chrom[i]), ("REF", refs[i]), *(("ALT", a) for a in alts[i])) if " " in val),
                           None)
            if problem is None and pos[i] > MAX_POS:
                problem = f"POS {pos[i]} is larger than {MAX_POS} (2^31-1), the largest position vareff supports"
            if problem is not None:
                chrom[i] = _malformed(reader, v, loc, problem, skip_malformed, warn)
                pos[i], ids[i], refs[i], alts[i], mal[i] = 0, None, "", (), True
    return chrom, pos, ids, refs, alts, mal


def _malformed(reader: VcfReader, v, loc, problem: str | None, skip_malformed: bool, warn: Warnings) -> str | None:
    """Raise MalformedRecordError for a malformed record, or warn (``skip_malformed``) and return
    the CHROM its row gets (the first word of its line)."""
    where = reader.describe(loc)
    if isinstance(v, BadRecord):
        text, problem = v.text, v.problem
    else:
        # (the line is read back while its text is shown; past the warning cap, its parsed CHROM will do)
        text = reader.line_text(loc) if not skip_malformed or warn.seen["malformed_record"] < warn.cap else None
        if problem is None:  # parsed without REF: never read REF/ID; say what is wrong from the text
            problem = line_problem(text, reader.n_samples) if text is not None else "htslib could not parse REF/ALT"
            text = text if text is not None else str(v).split("\t", 1)[0]
        elif text is None:
            text = v.CHROM
    shown = (text or "")[:120]
    if not skip_malformed:
        raise MalformedRecordError(
            f"{where}: malformed VCF record in {reader.path!r} ({problem}): {shown!r}",
            "fix the line, or pass --skip-malformed to keep going (the record gets status malformed_record)",
        )
    warn("malformed_record", "%s: malformed VCF record skipped (%s): %r", where, problem, shown)
    first = (text or "").split("\t", 1)[0] if "\t" in (text or "") else ((text or "").split() or [None])[0]
    return first or None
