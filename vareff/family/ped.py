"""Pedigrees from standard 6-column PED files, checked against a VCF's samples.

Columns: family, sample, father, mother, sex (1 male, 2 female, other unknown), phenotype
(2 affected, 1 unaffected, 0/-9 unknown).  ``0`` (or ``.``) in the parent columns means
"not in the pedigree".  Problems that make a flag impossible (a parent not in the VCF, a
sample with no parents) are warnings here; the flags that need the missing data stay false.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from vareff.errors import InputError

_SEX = {"1": "male", "2": "female"}
_PHENO = {"2": True, "1": False}
_MISSING_PARENT = {"0", ".", ""}


@dataclass(frozen=True)
class Person:
    """One PED row; ``father``/``mother`` are None when not given."""

    family: str
    sample: str
    father: str | None
    mother: str | None
    sex: str | None  # "male", "female" or None (unknown)
    affected: bool | None


@dataclass(frozen=True)
class Trio:
    """An affected proband with the parents that are present in the VCF (None when absent)."""

    proband: str
    father: str | None
    mother: str | None
    sex: str | None


@dataclass
class Pedigree:
    """Everyone in a PED file, by sample id."""

    people: dict[str, Person]

    def sex(self, sample: str) -> str | None:
        p = self.people.get(sample)
        return p.sex if p else None

    def trios(self, vcf_samples: list[str] | set[str]) -> list[Trio]:
        """Affected samples present in the VCF, with their parents where the VCF has them."""
        have = set(vcf_samples)
        out = []
        for p in self.people.values():
            if p.affected and p.sample in have:
                out.append(Trio(p.sample, p.father if p.father in have else None,
                                p.mother if p.mother in have else None, p.sex))
        return out

    def check(self, vcf_samples: list[str]) -> list[str]:
        """Warnings for a PED that does not fit the VCF (missing samples, parents, sexes)."""
        have = set(vcf_samples)
        warn = []
        absent = sorted(s for s in self.people if s not in have)
        if absent:
            warn.append(f"{len(absent)} PED sample(s) are not in the VCF ({', '.join(absent[:5])}"
                        f"{', ...' if len(absent) > 5 else ''}): their genotypes count as missing")
        if not any(p.affected for p in self.people.values()):
            warn.append("the PED file marks nobody as affected (phenotype 2): there is no proband to flag")
        for p in self.people.values():
            if not p.affected or p.sample not in have:
                continue
            if p.father is None and p.mother is None:
                warn.append(f"proband {p.sample} has no parents in the PED file: inheritance flags stay false")
            for role, parent in (("father", p.father), ("mother", p.mother)):
                if parent is not None and parent not in have:
                    warn.append(f"{role} {parent} of proband {p.sample} is not in the VCF: flags that need "
                                f"the {role}'s genotype stay false")
            if p.sex is None:
                warn.append(f"proband {p.sample} has unknown sex: no X-linked flag, chrX calls treated as diploid")
        for p in self.people.values():
            for role, parent, want in (("father", p.father, "male"), ("mother", p.mother, "female")):
                q = self.people.get(parent) if parent else None
                if q is not None and q.sex is not None and q.sex != want:
                    warn.append(f"{parent} is the {role} of {p.sample} but its PED sex is {q.sex}")
        return warn


def parse_ped(text: str, source: str = "PED") -> Pedigree:
    """Parse PED text (whitespace-separated; ``#`` lines are comments)."""
    people: dict[str, Person] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        f = line.split()
        if len(f) < 6:
            raise InputError(f"{source}: line {n}: a PED row needs 6 columns "
                             f"(family, sample, father, mother, sex, phenotype), found {len(f)}",
                             "use the standard 6-column PED format (tab or space separated)")
        fam, sample, father, mother, sex, pheno = f[:6]
        if sample in people:
            raise InputError(f"{source}: line {n}: sample {sample!r} is listed twice", "list each sample once")
        if sample in (father, mother):
            raise InputError(f"{source}: line {n}: sample {sample!r} is its own parent", "fix the parent columns")
        people[sample] = Person(fam, sample, None if father in _MISSING_PARENT else father,
                                None if mother in _MISSING_PARENT else mother, _SEX.get(sex), _PHENO.get(pheno))
    if not people:
        raise InputError(f"{source}: no PED rows", "give a 6-column PED file")
    return Pedigree(people)


def read_ped(path: str | os.PathLike) -> Pedigree:
    """Read a PED file (see :func:`parse_ped`)."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read PED file {os.fspath(path)!r}: {e}", "check the --ped path") from None
    return parse_ped(text, os.fspath(path))
