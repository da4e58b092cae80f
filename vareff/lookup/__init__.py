"""Precomputed lookups joined to alleles: AlphaMissense scores and region class / gene.

Both follow the "build once, query many" pattern:

* :mod:`vareff.lookup.am_build` converts a published AlphaMissense variant table
  (71.7 M rows for hg38) once into a sorted, memory-mappable Arrow table
  (:func:`~vareff.lookup.am_build.build_table`, CLI ``vareff am-build``) and
  :mod:`vareff.lookup.alphamissense` answers allele-exact lookups from it
  (:class:`~vareff.lookup.alphamissense.AlphaMissenseLookup`).
* :mod:`vareff.lookup.regions` builds an interval index from a GTF / GFF3 / SpliceAI
  gene table once per run and gives each allele a ``gene`` and a ``region_class``
  (:class:`~vareff.lookup.regions.RegionAnnotator`).

Both take a polars DataFrame of alleles (``chrom``, ``pos`` 1-based, ``ref``, ``alt``)
and return a DataFrame of the same height and row order; contig names are resolved
between ``1``/``chr1`` and ``MT``/``M``/``chrM`` automatically.
"""
