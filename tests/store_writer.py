"""A store client for the concurrency and crash tests: score random batches of a shared pool with
FakeScorer through the store hook, checking every result; ``forever`` keeps adding new alleles."""
from __future__ import annotations

import sys

import pysam

from store_helpers import FakeScorer, check_result, fake_batch
from vareff.store.hook import StoreHook
from vareff.window.genome import Genome


def main(store: str, fasta: str, seed: int, batches: int, pool: int) -> None:
    genome = Genome(fasta)
    fa = pysam.FastaFile(fasta)
    seqs = {c: fa.fetch(c).upper() for c in fa.references}
    sc = FakeScorer()
    hook = StoreHook(store, [sc], genome)
    b = 0
    while batches < 0 or b < batches:
        batch = fake_batch(seqs, 300, seed * 100_000 + b, pool=pool if pool > 0 else None)
        check_result(batch, hook.score(sc, batch))
        b += 1
        if b == 2:
            print("running", flush=True)
    print("ok", hook.counts()["fake"], flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
